# A stand-in for the official postgres image built from the local Debian base (Debian's
# postgresql package), with the same interface: POSTGRES_USER, POSTGRES_PASSWORD,
# POSTGRES_DB, /docker-entrypoint-initdb.d/*.sql, PGDATA, and `postgres <options>` as command.
ARG DEBIAN_IMAGE=mlops-local/debian:bookworm
FROM ${DEBIAN_IMAGE}
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PGDATA=/var/lib/postgresql/data
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]
