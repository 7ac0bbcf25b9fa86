"""The health_check DAG against the real object store, MLflow server and warehouse."""

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from helpers import task_states

pytestmark = pytest.mark.integration


def test_health_check_dag_succeeds(run_dag):
    dag_run = run_dag("health_check")
    assert dag_run.state == "success"
    states = task_states(dag_run)
    assert states == dict.fromkeys(["object_store", "mlflow_server", "warehouse", "report"], "success")


def test_health_check_fails_when_mlflow_is_unreachable(dags_without_retries, monkeypatch, stack):
    # Point the mlflow connection at a closed port: the DAG must fail, not report healthy.
    # Without task retries the failure is final at once (retries would only wait 90 s longer).
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW", '{"conn_type": "http", "host": "127.0.0.1", "port": 9, "schema": "http"}')
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    assert dags_without_retries.dags["health_check"].get_task("mlflow_server").retries == 0
    dag_run = dags_without_retries.run("health_check")
    states = task_states(dag_run)
    assert states["mlflow_server"] == "failed"
    assert states["object_store"] == "success"


def test_object_store_refuses_anonymous_and_accepts_the_key(stack):
    anonymous = boto3.client(
        "s3", endpoint_url=stack.s3_endpoint, config=Config(signature_version=UNSIGNED), region_name="us-east-1"
    )
    with pytest.raises(ClientError, match="AccessDenied"):
        anonymous.put_object(Bucket="mlops-data", Key="anonymous.txt", Body=b"x")
    keyed = boto3.client(
        "s3",
        endpoint_url=stack.s3_endpoint,
        aws_access_key_id=stack.access_key,
        aws_secret_access_key=stack.secret_key,
        region_name="us-east-1",
    )
    keyed.put_object(Bucket="mlops-data", Key="keyed.txt", Body=b"x")
    assert keyed.get_object(Bucket="mlops-data", Key="keyed.txt")["Body"].read() == b"x"


def _locked_batches(stack):
    """A connection holding a write lock on the warehouse's batches table (as a long scoring
    or ingest transaction does), and the engine; the caller rolls back and disposes."""
    import sqlalchemy as sa

    from mlops.io import warehouse

    warehouse.ensure_schema()
    engine = sa.create_engine(stack.warehouse_url, poolclass=sa.pool.NullPool)
    conn = engine.connect()
    if engine.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # the database's write lock
    else:
        conn.begin()
        conn.execute(sa.text("LOCK TABLE batches IN EXCLUSIVE MODE"))
    return engine, conn


def test_warehouse_probe_fails_while_the_pipeline_tables_are_locked(stack):
    from mlops.health.services import check_warehouse

    engine, conn = _locked_batches(stack)
    try:
        with pytest.raises(Exception, match="locked|lock timeout|cannot be written"):
            check_warehouse()
    finally:
        conn.rollback()
        conn.close()
        engine.dispose()
    assert check_warehouse()["service"] == "warehouse"


def test_warehouse_probe_leaves_no_row_behind(stack):
    import sqlalchemy as sa

    from mlops.health.services import check_warehouse

    check_warehouse()
    engine = sa.create_engine(stack.warehouse_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        left = conn.execute(sa.text("SELECT count(*) FROM batches WHERE status = 'health_probe'")).scalar()
    engine.dispose()
    assert left == 0
