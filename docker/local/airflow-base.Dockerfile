# A stand-in for apache/airflow built from the local Debian base (scripts/local_images.py),
# for machines that reach no image registry. It provides what the project's Dockerfile
# expects of its base: python3.11 with pip on PATH, user airflow (uid 50000, gid 0),
# AIRFLOW_HOME=/opt/airflow. Airflow itself comes from requirements.txt.
ARG DEBIAN_IMAGE=mlops-local/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN useradd --uid 50000 --gid 0 --create-home --home-dir /home/airflow airflow \
    && python3.11 -m venv /home/airflow/.local \
    && /home/airflow/.local/bin/pip install --no-cache-dir --upgrade "pip==26.3" \
    && mkdir -p /opt/airflow \
    && chown -R 50000:0 /home/airflow /opt/airflow
ENV PATH=/home/airflow/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    AIRFLOW_HOME=/opt/airflow \
    PIP_DISABLE_PIP_VERSION_CHECK=1
USER airflow
WORKDIR /opt/airflow
