"""
### Worker probe (test only)

Fans out `items` mapped tasks over the Celery workers. Each task first commits its row to
the warehouse table `worker_probe` (delete-then-insert keyed by run and item, in one
transaction: the idempotent write the pipeline's tasks use), then holds its worker slot
for `seconds`, long enough for the distributed test to kill a worker in the middle.
A retry of a killed attempt must leave exactly one row per item.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task

default_args = {"owner": "mlops", "retries": 3, "retry_delay": timedelta(seconds=2)}


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["mlops", "test"],
    default_args=default_args,
    doc_md=__doc__,
    params={"items": Param(6, type="integer", minimum=1), "seconds": Param(20, type="integer", minimum=0)},
)
def worker_probe():
    @task
    def prepare(params=None) -> list[int]:
        from mlops.io.connections import warehouse_hook

        warehouse_hook().run(
            "CREATE TABLE IF NOT EXISTS worker_probe "
            "(run_id TEXT NOT NULL, item INTEGER NOT NULL, hostname TEXT NOT NULL, try_number INTEGER NOT NULL)"
        )
        return list(range(params["items"]))

    @task
    def hold(item: int, params=None, ti=None, run_id=None) -> str:
        import time

        from mlops.hostname import worker_hostname
        from mlops.io.connections import warehouse_hook

        hostname = worker_hostname()
        warehouse_hook().run(
            [
                "DELETE FROM worker_probe WHERE run_id = %(run_id)s AND item = %(item)s",
                "INSERT INTO worker_probe VALUES (%(run_id)s, %(item)s, %(hostname)s, %(try_number)s)",
            ],
            parameters={"run_id": run_id, "item": item, "hostname": hostname, "try_number": ti.try_number},
        )
        time.sleep(params["seconds"])
        return hostname

    hold.expand(item=prepare())


worker_probe()
