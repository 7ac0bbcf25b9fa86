"""The default_args of every DAG of the project: owner, retries with backoff, failure alerts.

Also the freshness deadlines (Airflow DeadlineAlerts) of batch_score and drift_check.
One place, so that no DAG can be left without an alert or a retry (tests/dags checks every
task). Light imports only (configuration and the alert callback): DAG parsing stays fast.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DeadlineAlert, DeadlineReference, SyncCallback

from mlops.alerts import alert_on_failure, alert_on_missed_deadline
from mlops.config import get_config


def dag_default_args(**overrides) -> dict:
    """Airflow `default_args` for a DAG of this project.

    Retries and the first retry delay come from `tasks.retries` / `tasks.retry_delay_seconds`
    in the configuration; later retries back off exponentially (Airflow's
    `retry_exponential_backoff`, capped by `max_retry_delay`). A task that fails for good calls
    `mlops.alerts.alert_on_failure` (the configured channel). `overrides` replace single keys,
    e.g. `dag_default_args(retries=1)`; returns a new dict each call.
    """
    tasks = get_config().tasks
    return {
        "owner": "mlops",
        "retries": tasks.retries,
        "retry_delay": timedelta(seconds=tasks.retry_delay_seconds),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "on_failure_callback": alert_on_failure,
        **overrides,
    }


def scoring_deadline() -> DeadlineAlert:
    """batch_score's freshness deadline: its run done within `freshness.max_minutes` of being queued.

    batch_score runs when ingest loads a batch (asset event), so the run's queued_at is when
    the batch became ready to score: the batch is scored in time when the run succeeds before
    queued_at + max_minutes (Airflow then drops the deadline); otherwise, failed or still
    running, the scheduler calls `alert_on_missed_deadline`.
    """
    minutes = get_config().freshness.max_minutes
    rule = (
        f"a loaded batch is scored within freshness.max_minutes = {minutes:g} min of its batch_score run being queued"
    )
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(minutes=minutes),
        callback=SyncCallback(alert_on_missed_deadline, kwargs={"rule": rule}),
        name="batch scored in time",
    )


def drift_check_deadline() -> DeadlineAlert:
    """drift_check's deadline: each scheduled run done within `freshness.drift_check_max_hours`.

    The reference is the run's logical date (when the schedule wanted it), so a run that is
    stuck, fails or waits behind a backlog alerts once the day (by default) is over. A DAG
    that is paused creates no run, and no deadline: the Model health view's freshness says so.
    """
    hours = get_config().freshness.drift_check_max_hours
    rule = f"drift_check succeeds within freshness.drift_check_max_hours = {hours:g} h of its logical date"
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_LOGICAL_DATE,
        interval=timedelta(hours=hours),
        callback=SyncCallback(alert_on_missed_deadline, kwargs={"rule": rule}),
        name="drift checked in time",
    )
