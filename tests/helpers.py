"""Helpers shared by the tests: configuration overrides, task states and XComs of a dag.test()
run, warehouse queries, an S3 client of the test stack. Plain functions (fixtures live in
conftest.py, whose autouse `fresh_config` empties the configuration cache around each test)."""

from __future__ import annotations

import contextlib

import pytest


def task_states(dag_run, by_map_index: bool = False) -> dict[str, str]:
    """{task_id: state} of a DagRun's task instances. With by_map_index, a mapped task's
    instances are keyed `task_id[i]` (otherwise the last one read wins)."""
    return {
        (f"{ti.task_id}[{ti.map_index}]" if by_map_index and ti.map_index >= 0 else ti.task_id): ti.state
        for ti in dag_run.get_task_instances()
    }


def xcom(dag_run, task_id: str, key: str = "return_value"):
    """The XCom `key` that task `task_id` of `dag_run` pushed (read from Airflow's metadata DB),
    or None when it pushed none."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    query = XComModel.get_many(run_id=dag_run.run_id, key=key, dag_ids=dag_run.dag_id, task_ids=task_id)
    with create_session() as session:
        row = session.scalars(query).first()
        return None if row is None else XComModel.deserialize_value(row)


def query(sql: str, **params) -> list[tuple]:
    """Rows of a SQL query on the configured warehouse (the `warehouse` connection), as tuples."""
    import sqlalchemy as sa

    from mlops.io import warehouse

    with warehouse.engine().connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(sql), params)]


def s3_client(stack):
    """A boto3 S3 client of the test stack's object store, with the stack's key."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=stack.s3_endpoint,
        aws_access_key_id=stack.access_key,
        aws_secret_access_key=stack.secret_key,
        region_name="us-east-1",
    )


def set_config(monkeypatch, **variables: str | None) -> None:
    """Set (or, for None, unset) environment variables through `monkeypatch` and empty the
    configuration cache, so the next get_config() reads them, e.g.
    set_config(monkeypatch, MLOPS__TASKS__RETRIES="0")."""
    from mlops.config import get_config

    for name, value in variables.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    get_config.cache_clear()


@contextlib.contextmanager
def config_env(**variables: str | None):
    """set_config for a block (module-scoped fixtures, part of a test): on exit the variables
    are restored and the configuration cache emptied again."""
    from mlops.config import get_config

    try:
        with pytest.MonkeyPatch.context() as patch:
            set_config(patch, **variables)
            yield patch
    finally:
        get_config.cache_clear()
