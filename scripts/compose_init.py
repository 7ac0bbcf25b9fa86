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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from mlops.config import load_config  # noqa: E402


def connections(env: dict[str, str]) -> dict[str, dict]:
    conns = load_config().connections
    mlflow = env["MLOPS_MLFLOW_URL"]
    scheme, _, rest = mlflow.partition("://")
    host, _, port = rest.rstrip("/").partition(":")
    return {
        conns.object_store: {
            "conn_type": "aws",
            "login": env["MLOPS_S3_ACCESS_KEY"],
            "password": env["MLOPS_S3_SECRET_KEY"],
            # No endpoint_url means AWS S3 itself (credentials may then come from an IAM role).
            "extra": json.dumps(
                {"region_name": env.get("MLOPS_S3_REGION", "us-east-1")}
                | ({"endpoint_url": env["MLOPS_S3_ENDPOINT"]} if env.get("MLOPS_S3_ENDPOINT") else {})
            ),
        },
        conns.mlflow: {"conn_type": "http", "host": host, "port": int(port) if port else None, "schema": scheme},
        conns.warehouse: {
            "conn_type": "postgres",
            "host": env["MLOPS_WAREHOUSE_HOST"],
            "port": int(env.get("MLOPS_WAREHOUSE_PORT", "5432")),
            "login": env["MLOPS_WAREHOUSE_USER"],
            "password": env["MLOPS_WAREHOUSE_PASSWORD"],
            "schema": env.get("MLOPS_WAREHOUSE_DB", "warehouse"),
        },
    }


def write_password_file(env: dict[str, str]) -> None:
    path = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    user = env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin").split(":")[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({user: env["MLOPS_AIRFLOW_PASSWORD"]}))
    path.chmod(0o600)


def import_connections(env: dict[str, str]) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(connections(env), handle)
    try:
        subprocess.run(["airflow", "connections", "import", "--overwrite", handle.name], check=True)
    finally:
        os.unlink(handle.name)


def create_buckets(env: dict[str, str]) -> None:
    import boto3

    storage = load_config().storage
    s3 = boto3.client(
        "s3",
        endpoint_url=env.get("MLOPS_S3_ENDPOINT") or None,
        aws_access_key_id=env["MLOPS_S3_ACCESS_KEY"],
        aws_secret_access_key=env["MLOPS_S3_SECRET_KEY"],
        region_name=env.get("MLOPS_S3_REGION", "us-east-1"),
    )
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for bucket in (storage.bucket, storage.mlflow_bucket):
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket)
            print(f"created bucket {bucket}")


def main() -> int:
    env = dict(os.environ)
    write_password_file(env)
    import_connections(env)
    create_buckets(env)
    print("initialized: admin password, connections, buckets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
