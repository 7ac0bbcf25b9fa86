"""The default_args of every DAG of the project: owner, retries with backoff, failure alerts.

One place, so that no DAG can be left without an alert or a retry (tests/dags checks every
task). Light imports only (configuration and the alert callback): DAG parsing stays fast.
"""

from __future__ import annotations

from datetime import timedelta

from mlops.alerts import alert_on_failure
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
