"""One-off initialization of the docker-compose stack (the `airflow-init` service).

Runs after `airflow db migrate`, with the environment docker-compose.yaml gives the Airflow
services. Idempotent: run it again after changing a credential or an address.

* the admin password of the simple auth manager (MLOPS_AIRFLOW_PASSWORD) in its passwords file;
* the pipeline's connections (ids from include/config/pipeline.yaml) in the metadata DB,
  overwritten if they exist: object store (S3 endpoint and keys), MLflow, warehouse;
* the buckets of the object store, if missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the stack package, next to this file

from stack import ensure_buckets, load_config, write_passwords_file  # noqa: E402
from stack.connections import aws_connection, http_connection, pipeline_connections, postgres_connection  # noqa: E402


def connections(env: dict[str, str]) -> dict[str, dict]:
    """The pipeline's connections (stack.connections) from the compose environment (MLOPS_*)."""
    scheme, _, rest = env["MLOPS_MLFLOW_URL"].partition("://")
    host, _, port = rest.rstrip("/").partition(":")
    return pipeline_connections(
        aws_connection(
            env["MLOPS_S3_ACCESS_KEY"],
            env["MLOPS_S3_SECRET_KEY"],
            env.get("MLOPS_S3_ENDPOINT") or None,
            env.get("MLOPS_S3_REGION", "us-east-1"),
        ),
        http_connection(host, int(port) if port else None, scheme),
        postgres_connection(
            env["MLOPS_WAREHOUSE_HOST"],
            int(env.get("MLOPS_WAREHOUSE_PORT", "5432")),
            env["MLOPS_WAREHOUSE_USER"],
            env["MLOPS_WAREHOUSE_PASSWORD"],
            env.get("MLOPS_WAREHOUSE_DB", "warehouse"),
        ),
    )


def write_password_file(env: dict[str, str]) -> None:
    """The simple auth manager's passwords file: the admin user of
    AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS with MLOPS_AIRFLOW_PASSWORD."""
    user = env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin").split(":")[0]
    path = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    write_passwords_file(path, user, env["MLOPS_AIRFLOW_PASSWORD"])


def import_connections(env: dict[str, str]) -> None:
    """`airflow connections import --overwrite` of connections(env)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(connections(env), handle)
    try:
        subprocess.run(["airflow", "connections", "import", "--overwrite", handle.name], check=True)
    finally:
        os.unlink(handle.name)


def create_buckets(env: dict[str, str]) -> None:
    """The pipeline's and MLflow's buckets in the object store, when missing."""
    import boto3

    storage = load_config().storage
    s3 = boto3.client(
        "s3",
        endpoint_url=env.get("MLOPS_S3_ENDPOINT") or None,
        aws_access_key_id=env["MLOPS_S3_ACCESS_KEY"],
        aws_secret_access_key=env["MLOPS_S3_SECRET_KEY"],
        region_name=env.get("MLOPS_S3_REGION", "us-east-1"),
    )
    for bucket in ensure_buckets(s3, [storage.bucket, storage.mlflow_bucket]):
        print(f"created bucket {bucket}")


def main() -> int:
    """Password file, connections, buckets; exit code 0."""
    env = dict(os.environ)
    write_password_file(env)
    import_connections(env)
    create_buckets(env)
    print("initialized: admin password, connections, buckets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
