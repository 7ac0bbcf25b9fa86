"""batch_score's freshness deadline through Airflow's own deadline machinery, to the real webhook.

The DAG file is parsed and written to the metadata DB as the DAG processor does; a queued
run is created by the serialized DAG (Airflow computes and stores its Deadline: queued_at +
freshness.max_minutes). Then the two steps the scheduler and the executor take for a missed
deadline: `Deadline.handle_miss` (what SchedulerJobRunner's loop calls for every expired
deadline) and `callback_supervisor.execute_callback` (how the executor runs the queued
callback). No scheduler process runs: starting one would also run every other queued run of
the shared test DB, and takes longer than this test's budget.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
import sqlalchemy as sa
import structlog
from conftest import ROOT
from helpers import set_config

pytestmark = [pytest.mark.integration, pytest.mark.warehouses("postgres")]

RUN_ID = "deadline_probe"


def _queued_batch_score_run(session):
    """batch_score parsed, written to the DB, and a queued run created by its serialized DAG."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.dagbag import DBDagBag
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    manager = DagBundlesManager()
    manager.sync_bundles_to_db(session=session)
    session.commit()
    (bundle,) = manager.get_all_dag_bundles()
    bag = DagBag(dag_folder=str(ROOT / "dags" / "batch_score.py"))
    assert not bag.import_errors, bag.import_errors
    sync_bag_to_db(bag, bundle_name=bundle.name, bundle_version=None, session=session)
    dag = DBDagBag().get_latest_version_of_dag("batch_score", session=session)
    return dag.create_dagrun(
        run_id=RUN_ID,
        run_after=dt.datetime.now(dt.UTC),
        run_type=DagRunType.MANUAL,
        triggered_by=DagRunTriggeredByType.TEST,
        state=DagRunState.QUEUED,
        session=session,
    )


def _delete_probe_run():
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        session.execute(sa.delete(DagRun).where(DagRun.dag_id == "batch_score", DagRun.run_id == RUN_ID))


def test_a_batch_not_scored_in_time_alerts_on_the_webhook(airflow_db, webhook, monkeypatch):
    from airflow.models.deadline import Deadline
    from airflow.sdk.execution_time.callback_supervisor import execute_callback
    from airflow.utils.session import create_session

    set_config(monkeypatch, MLOPS__FRESHNESS__MAX_MINUTES="0.005")  # 0.3 s
    _delete_probe_run()
    try:
        with create_session() as session:
            run = _queued_batch_score_run(session)
            session.flush()
            (deadline,) = session.scalars(sa.select(Deadline).where(Deadline.dagrun_id == run.id)).all()
            assert deadline.deadline_time == run.queued_at + dt.timedelta(minutes=0.005)
            time.sleep(0.5)
            # The scheduler loop's query and call for expired, unhandled deadlines.
            expired = session.scalars(
                sa.select(Deadline).where(Deadline.deadline_time < dt.datetime.now(dt.UTC), ~Deadline.missed)
                .where(Deadline.id == deadline.id)
            ).all()  # fmt: skip
            assert expired == [deadline]
            deadline.handle_miss(session)
            data = deadline.callback.data
        ok, error = execute_callback(data["path"], data["kwargs"], "batch_score.py", None, structlog.get_logger())
    finally:
        _delete_probe_run()
    assert ok, error
    (message,) = webhook
    assert message["subject"] == "[mlops] batch_score missed its deadline"
    assert f"run: {RUN_ID}" in message["body"] and "freshness.max_minutes = 0.005 min" in message["body"]
    assert f"/dags/batch_score/runs/{RUN_ID}" in message["body"]
