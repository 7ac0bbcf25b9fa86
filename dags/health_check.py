"""
### Health check

Checks that the three services the pipeline depends on answer, with a real round trip each:

* **object store** (S3 API): write, read back and delete a probe object in the pipeline's bucket;
* **MLflow** tracking server: list experiments;
* **warehouse** (SQL, through the `warehouse` connection): `SELECT 1`.

Run it after changing connections or credentials. A failed task's log names the service
and the error. Connection ids come from `include/config/pipeline.yaml` (`connections`).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from mlops.config import get_config
from mlops.dag_defaults import dag_default_args


@dag(
    schedule=get_config().schedules.health_check,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["mlops", "ops"],
    default_args=dag_default_args(),
    doc_md=__doc__,
)
def health_check():
    @task
    def object_store() -> dict:
        from mlops.health.services import check_object_store

        return check_object_store()

    @task
    def mlflow_server() -> dict:
        from mlops.health.services import check_mlflow

        return check_mlflow()

    @task
    def warehouse() -> dict:
        from mlops.health.services import check_warehouse

        return check_warehouse()

    @task
    def report(*results: dict) -> None:
        for result in results:
            print(f"OK {result}")

    report(object_store(), mlflow_server(), warehouse())


health_check()
