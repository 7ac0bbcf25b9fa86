"""DAG integrity: every file in dags/ imports, every DAG has tags, retries and a doc, parsing is fast."""

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from helpers import set_config

from mlops.config import get_config

ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((ROOT / "dags").glob("*.py"))
EXPECTED_DAGS = {"health_check", "train", "rollback_champion", "drift_check", "ingest", "batch_score"}


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_expected_dags_are_present(dagbag):
    assert set(dagbag.dag_ids) >= EXPECTED_DAGS


def test_every_dag_file_defines_a_dag(dagbag):
    files_with_dags = {Path(dag.fileloc).name for dag in dagbag.dags.values()}
    assert {f.name for f in DAG_FILES} <= files_with_dags


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAGS))
def test_dag_has_tags_retries_and_doc(dagbag, dag_id):
    dag = dagbag.dags.get(dag_id)
    assert dag.tags, f"{dag_id} has no tags"
    assert dag.doc_md and len(dag.doc_md.strip()) > 80, f"{dag_id} has no useful doc_md"
    for task in dag.tasks:
        assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"


# Tasks that must not alert: their failure only repeats one already alerted.
SILENT_TASKS = {("ingest", "fail_if_a_file_failed")}


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAGS))
def test_every_task_alerts_on_failure(dagbag, dag_id):
    from mlops.alerts import alert_on_failure

    for task in dagbag.dags[dag_id].tasks:
        callbacks = task.on_failure_callback or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        if (dag_id, task.task_id) not in SILENT_TASKS:
            assert alert_on_failure in callbacks, f"{dag_id}.{task.task_id} fails silently"


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAGS))
def test_every_form_submits_with_its_fields_left_empty(dagbag, dag_id):
    """The trigger form sends an untouched empty field as null: every optional param must accept it."""
    params = dagbag.dags[dag_id].params
    for name in params:
        value = None if params[name] in ("", None) else params[name]
        params.get_param(name).resolve(value=value)  # ParamValidationError for a required empty field


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_parses_fast(dag_file):
    """Parse each file in a fresh interpreter as the DAG processor does: the file's own cost.

    The processor imports the airflow.* modules a file names before it forks the parse
    ([dag_processor] parsing_pre_import_modules, on by default), so they are imported first here.
    """
    code = (
        "import importlib, time, runpy, airflow.sdk\n"
        "from airflow.utils.file import iter_airflow_imports\n"
        f"for module in iter_airflow_imports({str(dag_file)!r}):\n"
        "    importlib.import_module(module)\n"
        "t0 = time.perf_counter()\n"
        f"runpy.run_path({str(dag_file)!r})\n"
        "print(time.perf_counter() - t0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds = float(out.stdout.strip().splitlines()[-1])
    assert seconds < 0.5, f"{dag_file.name} took {seconds:.2f}s to parse; move heavy imports into tasks"


def test_dag_files_do_not_import_heavy_libraries():
    heavy = ("sklearn", "mlflow", "great_expectations", "pandas", "scipy")
    code = (
        "import sys, runpy\n"
        f"for f in {[str(f) for f in DAG_FILES]!r}:\n"
        "    runpy.run_path(f)\n"
        f"print([m for m in {heavy!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_drift_check_form_shows_the_configured_thresholds(dagbag):
    drift = get_config().drift
    params = dagbag.dags["drift_check"].params
    for name in ("window_days", "psi_threshold", "ks_pvalue", "drifted_feature_share", "cooldown_hours"):
        description = params.get_param(name).description
        assert f"drift.{name} = {getattr(drift, name)}" in description, description


def _only_deadline(dag):
    from airflow.sdk import DeadlineAlert

    assert dag.deadline and len(dag.deadline) == 1, dag.deadline
    (alert,) = dag.deadline
    assert isinstance(alert, DeadlineAlert)
    assert alert.callback.path == "mlops.alerts.alert_on_missed_deadline"
    return alert


def test_batch_score_alerts_when_a_batch_is_not_scored_in_time(dagbag):
    """freshness.max_minutes after the run was queued (the batch loaded), on the alert channel."""
    from airflow.sdk import DeadlineReference

    alert = _only_deadline(dagbag.dags["batch_score"])
    minutes = get_config().freshness.max_minutes
    assert alert.reference == DeadlineReference.DAGRUN_QUEUED_AT
    assert alert.interval == timedelta(minutes=minutes)
    assert "freshness.max_minutes" in alert.callback.kwargs["rule"]


def test_drift_check_alerts_when_it_has_not_run_for_a_day(dagbag):
    from airflow.sdk import DeadlineReference

    alert = _only_deadline(dagbag.dags["drift_check"])
    assert alert.reference == DeadlineReference.DAGRUN_LOGICAL_DATE
    assert alert.interval == timedelta(hours=get_config().freshness.drift_check_max_hours)


def test_the_deadlines_follow_the_configuration(monkeypatch):
    from mlops import dag_defaults

    set_config(monkeypatch, MLOPS__FRESHNESS__MAX_MINUTES="7", MLOPS__FRESHNESS__DRIFT_CHECK_MAX_HOURS="30")
    assert dag_defaults.scoring_deadline().interval == timedelta(minutes=7)
    assert dag_defaults.drift_check_deadline().interval == timedelta(hours=30)


def test_the_other_dags_carry_no_deadline(dagbag):
    for dag_id in EXPECTED_DAGS - {"batch_score", "drift_check"}:
        assert not dagbag.dags[dag_id].deadline, dag_id


@pytest.mark.parametrize("dag_id", ["ingest", "batch_score", "train", "drift_check", "rollback_champion"])
def test_dags_that_write_state_run_one_at_a_time(dagbag, dag_id):
    # Overlapping batch_score runs re-planned the same backlog and scored batches twice.
    assert dagbag.dags[dag_id].max_active_runs == 1


def test_the_landing_sensor_retries_after_one_poke_interval(dagbag):
    # A deferred sensor resumed within seconds can be failed by Airflow 3.3's stale defer-exit
    # event (apache/airflow#72716): its retry must not cost a new file tasks.retry_delay_seconds.
    sensor = dagbag.dags["ingest"].get_task("wait_for_landing")
    assert sensor.retry_delay == timedelta(seconds=get_config().ingest.sensor_poke_seconds)
    assert sensor.retries >= 1
