"""The pipeline's three Airflow connections (object store, MLflow, warehouse) as Airflow
connection dicts, keyed by the ids of the configuration (`connections` in pipeline.yaml).

One definition for every place that makes them: the embedded stack's AIRFLOW_CONN_*
variables (stack.settings) and the docker-compose init (scripts/compose_init.py).
"""

from __future__ import annotations

from mlops.config import load_config


def aws_connection(access_key: str, secret_key: str, endpoint_url: str | None, region: str = "us-east-1") -> dict:
    """The object store (Amazon provider's `aws` type). No endpoint_url means AWS S3 itself."""
    extra = {"region_name": region} | ({"endpoint_url": endpoint_url} if endpoint_url else {})
    return {"conn_type": "aws", "login": access_key, "password": secret_key, "extra": extra}


def http_connection(host: str, port: int | None, scheme: str = "http", login: str = "", password: str = "") -> dict:
    """The MLflow tracking server; login and password only when it asks for basic auth."""
    conn = {"conn_type": "http", "host": host, "port": port, "schema": scheme}
    return conn | ({"login": login, "password": password} if login else {})


def postgres_connection(host: str, port: int, login: str, password: str, database: str) -> dict:
    """A PostgreSQL database (the warehouse)."""
    return {
        "conn_type": "postgres",
        "host": host,
        "port": port,
        "login": login,
        "password": password,
        "schema": database,
    }


def pipeline_connections(object_store: dict, mlflow: dict, warehouse: dict) -> dict[str, dict]:
    """The three connections keyed by their ids in the configuration (MLOPS_CONFIG)."""
    conns = load_config().connections
    return {conns.object_store: object_store, conns.mlflow: mlflow, conns.warehouse: warehouse}
