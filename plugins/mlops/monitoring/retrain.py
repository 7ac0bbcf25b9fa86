"""Whether drift_check may trigger the train DAG now: deduplication of retraining requests.

No trigger while a train run is queued or running, nor within cooldown_hours after the last
train run (counted from its end, or its start while it has none), so a drift alert repeated
every day (or ten times in a row) gives one training, and a failing train DAG is not
re-triggered in a loop. Runs of train are read through the Airflow task SDK (tasks in
Airflow 3 do not touch the metadata database).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

TRAIN_DAG_ID = "train"
IN_FLIGHT_STATES = ("queued", "running")


def decide(
    fired: bool, in_flight: int, last_run_at: dt.datetime | None, now: dt.datetime, cooldown_hours: float
) -> tuple[str, str]:
    """('trigger' | 'skip' | 'not needed', why)."""
    if not fired:
        return "not needed", "the drift rule did not fire"
    if in_flight:
        return "skip", f"{in_flight} {TRAIN_DAG_ID} run(s) already queued or running"
    if last_run_at is not None:
        elapsed = now - last_run_at
        cooldown = dt.timedelta(hours=cooldown_hours)
        if elapsed < cooldown:
            return "skip", (
                f"cooldown: the last {TRAIN_DAG_ID} run was at {last_run_at:%Y-%m-%d %H:%M:%S} UTC, "
                f"{elapsed.total_seconds() / 3600:.1f} h ago (< {cooldown_hours:g} h)"
            )
    return "trigger", "the drift rule fired and no train run is in flight or cooling down"


def train_runs_in_flight(ti: Any, dag_id: str = TRAIN_DAG_ID) -> int:
    """Number of queued or running runs of dag_id (task SDK: RuntimeTaskInstance.get_dr_count)."""
    return ti.get_dr_count(dag_id=dag_id, states=list(IN_FLIGHT_STATES))


def last_run_time(dag_id: str = TRAIN_DAG_ID, now: dt.datetime | None = None) -> dt.datetime | None:
    """When the latest run of dag_id (by logical date) ended, or started if it has not ended.

    The task SDK offers the previous run of another DAG only as a supervisor message (what
    RuntimeTaskInstance.get_previous_dagrun sends for the task's own DAG). Runs without a
    logical date (manual REST triggers with logical_date null) are not seen here; while they
    are queued or running, train_runs_in_flight still counts them.
    """
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.comms import GetPreviousDagRun

    now = now or dt.datetime.now(dt.UTC)
    # "Previous" means a logical date strictly before the one given: look just past now.
    response = task_runner.SUPERVISOR_COMMS.send(
        GetPreviousDagRun(dag_id=dag_id, logical_date=now + dt.timedelta(seconds=1))
    )
    run = getattr(response, "dag_run", None)
    if run is None:
        return None
    times = [t for t in (run.end_date, run.start_date, run.run_after, run.logical_date) if t is not None]
    return max(times) if times else None


def train_conf(summary: dict) -> dict:
    """The conf of the triggered train run: why, which features, where the report is."""
    return {
        "reason": f"drift_check {summary['drift_run_id']}: {summary['reason']}",
        "drifted_features": summary["drifted_features"],
        "report_uri": summary["report_uri"],
    }


def train_run_id(drift_run_id: str) -> str:
    """The run id of the train run a drift run triggers: a retried trigger cannot make a second one."""
    return f"drift__{drift_run_id}"
