"""The train and rollback_champion DAGs on a real MLflow server and a real warehouse.

The warehouse of this module is its own SQLite file (through the warehouse connection),
filled with the Turku data the way ingest stores it (one batch per year, impossible pressure
set to NULL), so these tests do not depend on ingest. To stay quick, runs use the last 365
days, two families and a search budget of 2; each test registers under its own model name.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import uuid

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from helpers import config_env, set_config, task_states, xcom

from example_warehouse import WAREHOUSE_CONN_ENV, load_observations, own_warehouse
from mlops.config import get_config
from mlops.io import warehouse

pytestmark = pytest.mark.integration

# A year of data and a small search keep each run short.
CONF = {
    "training_window_days": 365,
    "model_families": ["logistic_regression", "hist_gradient_boosting"],
    "search_iterations": 2,
}
# The injected (worse or useless) models need no tuning to show what they are.
QUICK_CONF = {**CONF, "model_families": ["logistic_regression"]}
# Features without the current condition or the time: a weaker model, still better than persistence.
WORSE_FEATURES = "[Humidity, Visibility_km]"
# Wind bearing alone says nothing about rain 4 hours ahead: it loses to persistence.
USELESS_FEATURES = "[Wind_bearing_degrees]"


@pytest.fixture(scope="module")
def turku_warehouse(stack, tmp_path_factory):
    """A warehouse of this module's own, on the parametrized backend: other tests' rows cannot
    move the newest observation (the end of the training window)."""
    connection = own_warehouse(stack, tmp_path_factory, "train_tests")
    with config_env(**{WAREHOUSE_CONN_ENV: json.dumps(connection)}):
        assert load_observations() > 19000
        yield connection


def use_model_name(monkeypatch, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:6]}"
    set_config(monkeypatch, MLOPS__MODEL__REGISTERED_NAME=name)
    return name


@pytest.fixture(scope="module")
def champion_model(turku_warehouse, stack, dagbag):
    """A model name whose first train run made version 1 champion."""
    with config_env() as mp:
        name = use_model_name(mp, "rain_test")
        dag_run = dagbag.run(
            "train",
            {**CONF, "reason": "integration test", "drifted_features": ["Humidity"], "report_uri": "s3://r/1.html"},
        )
        yield {"name": name, "dag_run": dag_run}


@pytest.fixture()
def on_champion_model(champion_model, monkeypatch):
    set_config(monkeypatch, MLOPS__MODEL__REGISTERED_NAME=champion_model["name"])
    return champion_model["name"]


def client():
    import mlflow

    from mlops.io.connections import mlflow_tracking_uri

    mlflow.set_tracking_uri(mlflow_tracking_uri())
    return mlflow.MlflowClient()


def decisions(name: str) -> pd.DataFrame:
    with warehouse.engine().connect() as conn:
        return pd.read_sql_query(
            sa.text("SELECT * FROM model_decisions WHERE model_name = :n ORDER BY decided_at"), conn, params={"n": name}
        )


def alias(name: str, which: str) -> str | None:
    from mlops.io.registry import alias_version

    return alias_version(name, which, client())


def _artifact_text(run_id: str, path: str) -> str:
    with open(client().download_artifacts(run_id, path)) as fh:
        return fh.read()


def parent_and_children(dag_run, name: str):
    c = client()
    experiment = c.get_experiment_by_name(name)
    runs = c.search_runs([experiment.experiment_id], f"tags.`airflow.run_id` = '{dag_run.run_id}'")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1
    return parents[0], children


def test_run_is_recorded_and_first_model_becomes_champion(champion_model, on_champion_model):
    name, dag_run = champion_model["name"], champion_model["dag_run"]
    assert dag_run.state == "success", task_states(dag_run)
    steps = ["snapshot", "train_candidates", "register", "decide", "route", "promote"]
    # promotion.approval = never (the shipped default): the approval task is skipped
    assert task_states(dag_run) == {**dict.fromkeys(steps, "success"), "approval": "skipped"}
    parent, children = parent_and_children(dag_run, name)

    # parent run: trigger, params, dataset inputs (query source, digest), baselines
    tags = parent.data.tags
    assert tags["trigger.reason"] == "integration test"
    assert tags["trigger.drifted_features"] == "Humidity"
    assert tags["airflow.dag_id"] == "train" and tags["airflow.run_id"] == dag_run.run_id
    assert parent.data.params["training_window_days"] == "365"
    assert parent.data.params["search_iterations"] == "2"
    inputs = {d.tags[0].value: d.dataset for d in parent.inputs.dataset_inputs}
    assert set(inputs) == {"training", "holdout"}
    source = json.loads(inputs["training"].source)
    assert "FROM observations" in source["query"] and source["batch_count"] == 1  # the last 365 days
    assert source["first_batch"] == source["last_batch"] == "turku-2016" and len(source["batch_ids_sha256"]) == 64
    window_file = client().download_artifacts(parent.info.run_id, source["batch_ids_artifact"])
    with open(window_file) as fh:
        assert json.load(fh)["batch_ids"] == ["turku-2016"]
    assert len(inputs["training"].digest) == 32
    # MLflow as its users expect: the model-training view, descriptions on experiment and model
    experiment = client().get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "train" in experiment.tags["mlflow.note.content"]
    assert "champion" in client().get_registered_model(name).description
    assert 0.5 < parent.data.metrics["persistence_roc_auc"] < 1
    assert parent.data.metrics["base_rate_roc_auc"] == pytest.approx(0.5)

    # one child per candidate with params, the seven metrics, baselines and plots
    assert sorted(r.data.tags["family"] for r in children) == ["hist_gradient_boosting", "logistic_regression"]
    for child in children:
        for metric in ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "brier"):
            assert metric in child.data.metrics
            assert f"persistence_{metric}" in child.data.metrics
        assert any(k.startswith("best_") for k in child.data.params)
        plots = {f.path for f in client().list_artifacts(child.info.run_id, "plots")}
        assert plots == {"plots/confusion_matrix.png", "plots/calibration.png"}
        assert len(child.inputs.dataset_inputs) == 2

    # the registered version: alias, tags, signature, reference profile, loads and predicts
    assert alias(name, "champion") == "1"
    assert alias(name, "challenger") is None  # the challenger became champion
    version = client().get_model_version(name, "1")
    # A few tags; the decision as a readable description; the details as artifacts of the train run.
    assert set(version.tags) == {
        "family", "window_start", "window_end", "holdout_metrics",
        "previous_champion", "decision.action", "decision.outcome", "decision.at",
    }  # fmt: skip
    assert 0.5 < json.loads(version.tags["holdout_metrics"])["roc_auc"] <= 1
    assert version.tags["decision.outcome"] == "first_champion"
    assert "**promote: first_champion**" in version.description and "first champion" in version.description
    assert "- holdout: " in version.description and "`promotion/decision.json`" in version.description
    lineage = json.loads(_artifact_text(parent.info.run_id, "registry/model_version.json"))
    assert lineage["batch_ids"] == ["turku-2016"] and len(lineage["data_digest"]) == 32
    assert lineage["version"] == "1" and lineage["airflow"]["run_id"] == dag_run.run_id
    detail = json.loads(_artifact_text(parent.info.run_id, "promotion/decision.json"))
    assert detail["outcome"] == "first_champion" and detail["holdout_counts"]["rows"] == detail["n_holdout"]
    profile_path = client().download_artifacts(version.run_id, "reference/reference_profile.json")
    with open(profile_path) as fh:
        profile = json.load(fh)
    assert "Pressure_millibars" in profile["features"] and "scores" in profile

    import mlflow.sklearn

    model = mlflow.sklearn.load_model(f"models:/{name}@champion")
    assert "Future_weather_condition" not in model.feature_names_in_
    assert model.feature_names_in_[0] == "Timestamp"
    row = pd.DataFrame(
        {"Timestamp": [pd.Timestamp("2016-12-01 12:00")], **{f: [np.nan] for f in model.feature_names_in_[1:]}}
    )
    assert 0 <= model.predict_proba(row)[0, 1] <= 1  # missing values are imputed

    # the evidence of the first champion: class counts and every baseline CI above 0
    promoted = xcom(dag_run, "promote")
    counts, config = promoted["holdout_counts"], get_config().promotion
    assert counts["positives"] >= config.min_holdout_positives and counts["negatives"] >= config.min_holdout_negatives
    assert all(test["ci_low"] > 0 for test in promoted["baseline_tests"].values())
    assert promoted["guard_tests"]["brier"]["ci_high"] >= 0

    # the decision in the warehouse
    (row,) = decisions(name).to_dict("records")
    assert json.loads(row["details"])["holdout_counts"] == counts
    assert row["outcome"] == "first_champion" and row["champion_after"] == "1" and row["champion_before"] is None
    assert row["candidate_score"] > row["persistence_score"] and row["candidate_score"] > row["base_rate_score"]
    assert row["triggered_by"].startswith("manual")


def test_retraining_same_data_and_seed_reproduces_metrics_and_is_not_promoted(
    champion_model, on_champion_model, run_dag
):
    name, first = champion_model["name"], champion_model["dag_run"]
    champion_before = alias(name, "champion")
    again = run_dag("train", CONF)
    assert again.state == "success", task_states(again)
    _, first_children = parent_and_children(first, name)
    _, again_children = parent_and_children(again, name)
    by_family = {r.data.tags["family"]: r.data.metrics for r in first_children}
    for child in again_children:
        expected = by_family[child.data.tags["family"]]
        for metric in ("roc_auc", "log_loss", "brier", "f1", f"cv_{get_config().promotion.metric}"):
            assert child.data.metrics[metric] == pytest.approx(expected[metric], rel=1e-9), metric
    decision = xcom(again, "promote")
    # the same model again: a zero difference is not an improvement
    assert decision["outcome"] == "rejected" and decision["test"]["difference"] == pytest.approx(0, abs=1e-12)
    assert alias(name, "champion") == champion_before
    assert alias(name, "challenger") == decision["candidate_version"]


def test_deliberately_worse_model_is_not_promoted(champion_model, on_champion_model, run_dag, monkeypatch):
    name = champion_model["name"]
    champion_before = alias(name, "champion")
    set_config(monkeypatch, MLOPS__DATASET__FEATURES=WORSE_FEATURES)
    dag_run = run_dag("train", QUICK_CONF)
    assert dag_run.state == "success", task_states(dag_run)
    decision = xcom(dag_run, "promote")
    assert decision["outcome"] == "rejected"
    assert f"champion v{champion_before}" in decision["reason"]
    assert decision["scores"]["candidate"] < decision["scores"]["champion"]
    assert decision["test"]["ci_high"] < 0
    assert alias(name, "champion") == champion_before
    version = client().get_model_version(name, decision["candidate_version"])
    assert version.tags["decision.outcome"] == "rejected" and decision["reason"] in version.description
    assert "**challenged**" in client().get_model_version(name, champion_before).description
    assert decisions(name)["outcome"].iloc[-1] == "rejected"


def test_force_promote_then_rollback_restores_previous_champion(
    champion_model, on_champion_model, run_dag, monkeypatch
):
    name = champion_model["name"]
    champion_before = alias(name, "champion")
    set_config(monkeypatch, MLOPS__DATASET__FEATURES=WORSE_FEATURES)
    forced = run_dag("train", {**QUICK_CONF, "force_promote": True})
    decision = xcom(forced, "promote")
    assert decision["outcome"] == "forced" and "force_promote=True overrode the gate" in decision["reason"]
    assert alias(name, "champion") == decision["candidate_version"] != champion_before

    rollback = run_dag("rollback_champion", {"reason": "forced model is worse"})
    assert rollback.state == "success", task_states(rollback)
    assert alias(name, "champion") == champion_before
    row = decisions(name).iloc[-1]
    assert row["action"] == "rollback" and row["champion_before"] == decision["candidate_version"]
    assert row["champion_after"] == champion_before
    tags = client().get_model_version(name, champion_before).tags
    assert tags["decision.action"] == "rollback"


def test_model_that_loses_to_persistence_is_not_promoted(turku_warehouse, run_dag, monkeypatch):
    name = use_model_name(monkeypatch, "useless")
    set_config(monkeypatch, MLOPS__DATASET__FEATURES=USELESS_FEATURES, MLOPS__DATASET__CALENDAR_FEATURES="[]")
    dag_run = run_dag("train", QUICK_CONF)
    assert dag_run.state == "success", task_states(dag_run)
    decision = xcom(dag_run, "promote")
    assert decision["outcome"] == "rejected"
    assert "persistence baseline" in decision["reason"] and "does not lie above 0" in decision["reason"]
    assert decision["scores"]["candidate"] < decision["scores"]["persistence"]
    assert alias(name, "champion") is None  # even the first model must beat the baselines
    assert alias(name, "challenger") == decision["candidate_version"]
    assert not math.isnan(decisions(name)["persistence_score"].iloc[0])


def test_empty_warehouse_skips_the_run(stack, run_dag, monkeypatch, tmp_path_factory):
    monkeypatch.setenv(WAREHOUSE_CONN_ENV, json.dumps(own_warehouse(stack, tmp_path_factory, "train_empty")))
    dag_run = run_dag("train", QUICK_CONF)
    assert dag_run.state == "success"
    steps = ["snapshot", "train_candidates", "register", "decide", "route", "approval", "promote"]
    assert task_states(dag_run) == dict.fromkeys(steps, "skipped")


@pytest.mark.skipif(
    not os.environ.get("MLOPS_TRAIN_FULL_DATA"),
    reason="set MLOPS_TRAIN_FULL_DATA=1 to train on all the data with the shipped configuration (a measurement)",
)
def test_full_data_with_the_shipped_configuration(turku_warehouse, run_dag, monkeypatch):
    """The closing-note figures: wall time of the DAG and the champion against the baselines."""
    use_model_name(monkeypatch, "rain_full")
    conf = {"reason": "full-data measurement", "force_promote": False}
    conf |= {"training_window_days": None, "model_families": None, "search_iterations": None}  # the configuration
    dag_run = run_dag("train", conf)
    assert dag_run.state == "success", task_states(dag_run)
    decision = xcom(dag_run, "promote")
    trained = xcom(dag_run, "train_candidates")
    report = {
        "dag_wall_seconds": (dag_run.end_date - dag_run.start_date).total_seconds(),
        "task_seconds": {
            ti.task_id: (ti.end_date - ti.start_date).total_seconds() for ti in dag_run.get_task_instances()
        },
        "n_training": trained["n_training"],
        "n_holdout": trained["n_holdout"],
        "candidates": trained["candidates"],
        "chosen": trained["chosen"]["family"],
        "outcome": decision["outcome"],
        "holdout_metrics": decision["holdout_metrics"],
    }
    print("FULL DATA TRAIN REPORT " + json.dumps(report, indent=2, default=str))
    assert decision["outcome"] == "first_champion"


# ---------------------------------------------------------------- crash safety: kill at each step

KILL_STEPS = ["intent_written", "alias_moved", "recorded"]
# Differ between two runs of the same decision by design (when, which run, which model copy).
RUN_SPECIFIC = {"decision_id", "decided_at", "run_id", "model_name", "details"}


def _run_in_subprocess(call: str, args: dict, crash_at: str | None, tmp_path) -> int:
    """Run mlops.training.promotion.<call>(**args) in a fresh interpreter, as a task process would; returns its exit code."""
    import subprocess
    import sys

    from mlops.config import PROJECT_ROOT
    from mlops.training.promotion import CRASH_AT_ENV

    (tmp_path / "args.json").write_text(json.dumps(args))
    env = {k: v for k, v in os.environ.items() if k != CRASH_AT_ENV}
    env["PYTHONPATH"] = str(PROJECT_ROOT / "plugins")
    if crash_at:
        env[CRASH_AT_ENV] = crash_at
    code = f"import json; from mlops.training.promotion import {call}; {call}(**json.load(open('args.json')))"
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, timeout=600).returncode


def _copy_versions(name: str, sources: list, aliases: dict, tags: dict | None = None) -> None:
    """A registered model `name` whose versions 1..n are copies of the given ModelVersions."""
    c = client()
    c.create_registered_model(name)
    for source in sources:
        # MLflow 3 logged models: the source models:/<model_id> must name its model id
        model_id = source.model_id or source.source.removeprefix("models:/")
        c.create_model_version(name, source.source, run_id=source.run_id, model_id=model_id)
    for alias_name, version in aliases.items():
        c.set_registered_model_alias(name, alias_name, version)
    for (version, key), value in (tags or {}).items():
        c.set_model_version_tag(name, version, key, value)


def _registry_state(name: str) -> dict:
    """Aliases, model tags and version tags of `name`, without the run-specific values."""
    c = client()
    model = c.get_registered_model(name)
    versions = {
        v.version: {k: val for k, val in v.tags.items() if k not in ("decision.at", "decision.run_id")}
        for v in c.search_model_versions(f"name = '{name}'")
    }
    return {"aliases": dict(model.aliases), "model_tags": dict(model.tags), "version_tags": versions}


def _decision_rows(name: str) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in RUN_SPECIFIC} for row in decisions(name).to_dict("records")]


def _pending(name: str) -> dict | None:
    from mlops.io.registry import PENDING_DECISION_TAG

    value = client().get_registered_model(name).tags.get(PENDING_DECISION_TAG)
    return json.loads(value) if value else None


def _kill_then_retry(call, name, args, step, tmp_path) -> None:
    assert _run_in_subprocess(call, args, step, tmp_path) == -9  # SIGKILL, as a lost worker
    intent = _pending(name)
    assert intent is not None, "the intent must be recorded before the kill point"
    assert _run_in_subprocess(call, args, None, tmp_path) == 0  # the retry
    assert _pending(name) is None
    # the retry completed the intent, it did not decide again
    assert decisions(name)["decided_at"].tolist() == [intent["decided_at"]]


@pytest.mark.warehouses("postgres")  # the kill points are in the registry and the decisions table
def test_promote_killed_at_each_step_and_retried_ends_like_an_uninterrupted_run(
    champion_model, on_champion_model, run_dag, tmp_path
):
    name = champion_model["name"]
    forced = run_dag("train", {**QUICK_CONF, "force_promote": True})
    assert forced.state == "success", task_states(forced)
    registered = xcom(forced, "register")
    window, trained = xcom(forced, "snapshot"), xcom(forced, "train_candidates")
    versions = [
        client().get_model_version(name, v) for v in (xcom(forced, "promote")["champion_before"], registered["version"])
    ]

    def scenario(step: str | None) -> tuple[dict, list]:
        copy = f"{name}_{step or 'uninterrupted'}"
        _copy_versions(copy, versions, {"champion": "1", "challenger": "2"})
        args = {
            "snapshot": window, "train_result": trained,
            "registered": {**registered, "model_name": copy, "version": "2"},
            "settings": {"force_promote": True},
            "trigger": {"dag_id": "train", "run_id": f"kill-{step}", "triggered_by": "test", "reason": "kill test"},
        }  # fmt: skip
        if step is None:
            assert _run_in_subprocess("promote", args, None, tmp_path) == 0
        else:
            _kill_then_retry("promote", copy, args, step, tmp_path)
        return _registry_state(copy), _decision_rows(copy)

    expected = scenario(None)
    assert expected[0]["aliases"] == {"champion": "2"}
    assert expected[0]["version_tags"]["2"]["previous_champion"] == "1"
    assert len(expected[1]) == 1 and expected[1][0]["outcome"] == "forced"
    for step in KILL_STEPS:
        assert scenario(step) == expected, step


@pytest.mark.warehouses("postgres")  # the kill points are in the registry and the decisions table
def test_rollback_killed_at_each_step_and_retried_ends_like_an_uninterrupted_run(
    champion_model, on_champion_model, tmp_path
):
    """Champions v1 -> v2 -> v3: a rollback goes to v2, whatever the step it was killed at."""
    champion = client().get_model_version(champion_model["name"], "1")

    def scenario(step: str | None) -> tuple[dict, list]:
        copy = f"{champion_model['name']}_rb_{step or 'uninterrupted'}"
        chain = {("2", "previous_champion"): "1", ("3", "previous_champion"): "2"}
        _copy_versions(copy, [champion] * 3, {"champion": "3"}, chain)
        args = {
            "target_version": None,
            "trigger": {"dag_id": "rollback_champion", "run_id": f"kill-{step}", "triggered_by": "test"},
        }
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MLOPS__MODEL__REGISTERED_NAME", copy)
            if step is None:
                assert _run_in_subprocess("rollback", args, None, tmp_path) == 0
            else:
                _kill_then_retry("rollback", copy, args, step, tmp_path)
        return _registry_state(copy), _decision_rows(copy)

    expected = scenario(None)
    assert expected[0]["aliases"] == {"champion": "2"}
    assert [(r["champion_before"], r["champion_after"]) for r in expected[1]] == [("3", "2")]
    for step in KILL_STEPS:
        assert scenario(step) == expected, step


# ---------------------------------------------------------------- a failing family is skipped

# No rain before this time: the first TimeSeriesSplit fold of a 365-day window holds one class,
# on which logistic regression and random forest cannot be scored; gradient boosting can.
DRY_UNTIL = "2016-04-20 00:00:00"


@pytest.fixture(scope="module")
def dry_spring_warehouse(stack, tmp_path_factory):
    connection = own_warehouse(stack, tmp_path_factory, "train_dry_spring")
    with config_env(**{WAREHOUSE_CONN_ENV: json.dumps(connection)}):
        load_observations()
        dataset = get_config().dataset
        engine = warehouse.engine()
        table = sa.Table("observations", sa.MetaData(), autoload_with=engine)
        with engine.begin() as conn:
            conn.execute(
                table.update().where(table.c[dataset.time_column] < DRY_UNTIL).values({dataset.label.source_column: 0})
            )
        yield connection


def test_a_failing_family_is_recorded_and_skipped(dry_spring_warehouse, run_dag, monkeypatch):
    monkeypatch.setenv(WAREHOUSE_CONN_ENV, json.dumps(dry_spring_warehouse))
    name = use_model_name(monkeypatch, "dry_spring")
    dag_run = run_dag("train", {**CONF, "force_promote": True})
    assert task_states(dag_run)["train_candidates"] == "success", task_states(dag_run)
    trained = xcom(dag_run, "train_candidates")
    status = {c["family"]: c["status"] for c in trained["candidates"]}
    assert status == {"logistic_regression": "failed", "hist_gradient_boosting": "trained"}
    assert trained["chosen"]["family"] == "hist_gradient_boosting"
    parent, children = parent_and_children(dag_run, name)
    assert parent.info.status == "FINISHED"
    (failed,) = [r for r in children if r.data.tags["family"] == "logistic_regression"]
    assert failed.info.status == "FAILED" and "no configuration could be scored" in failed.data.tags["error"]


def test_when_every_family_fails_the_task_fails_with_all_reasons(dry_spring_warehouse, run_dag, monkeypatch):
    monkeypatch.setenv(WAREHOUSE_CONN_ENV, json.dumps(dry_spring_warehouse))
    name = use_model_name(monkeypatch, "dry_spring_all")
    dag_run = run_dag("train", {**CONF, "model_families": ["logistic_regression", "random_forest"]})
    assert task_states(dag_run)["train_candidates"] == "failed"
    c = client()
    runs = c.search_runs([c.get_experiment_by_name(name).experiment_id], f"tags.`airflow.run_id` = '{dag_run.run_id}'")
    # the attempt ended its runs (AirflowFailException: no retry): none is left RUNNING
    assert runs and {r.info.status for r in runs} == {"FAILED"}
    assert len([r for r in runs if "mlflow.parentRunId" not in r.data.tags]) == 1
    errors = {r.data.tags["family"]: r.data.tags["error"] for r in runs if "family" in r.data.tags}
    assert set(errors) == {"logistic_regression", "random_forest"}


def test_a_retry_ends_the_runs_a_dead_attempt_left_running(stack, monkeypatch):
    """A killed worker cannot end its MLflow runs; the retry of the same Airflow run does."""
    import mlflow

    from mlops.training.pipeline import supersede_unfinished_train

    name = use_model_name(monkeypatch, "dead_attempt")
    c = client()
    experiment_id = c.create_experiment(name)
    tags = {"airflow.run_id": "manual__dead", "train_status": "running"}
    parent = c.create_run(experiment_id, tags=tags)
    child = c.create_run(experiment_id, tags={**tags, "mlflow.parentRunId": parent.info.run_id})
    other = c.create_run(experiment_id, tags={**tags, "airflow.run_id": "manual__other"})

    ended = supersede_unfinished_train(mlflow, experiment_id, "manual__dead")
    assert sorted(ended) == sorted([parent.info.run_id, child.info.run_id])
    for run in (parent, child):
        run = c.get_run(run.info.run_id)
        assert run.info.status == "FAILED" and run.data.tags["train_status"] == "superseded"
    assert c.get_run(other.info.run_id).info.status == "RUNNING"


# ---------------------------------------------------------------- human approval through the REST API


@pytest.fixture(scope="module")
def api_server(stack, test_settings):
    """Airflow's api-server on the tests' metadata DB: it answers the HITL requests that
    dag.test() waits for, as the UI's Required actions or a script would."""
    import stack as stack_module
    from airflow_api import AirflowClient

    env = {**os.environ, **test_settings.airflow_env()}
    passwords = test_settings.airflow_home / "passwords.json"
    passwords.write_text(json.dumps({test_settings.airflow_user: test_settings.airflow_password}))
    proc = stack_module._spawn(stack, "api-server", [str(stack_module.BIN / "airflow"), "api-server"], env)
    try:
        stack_module.wait_http(
            f"{test_settings.airflow_url}/api/v2/monitor/health", proc, 180, "api-server",
            stack_module._log_file(stack, "api-server"),
        )  # fmt: skip
        yield AirflowClient(test_settings.airflow_url, test_settings.airflow_user, test_settings.airflow_password)
    finally:
        stack_module.stop_process(stack, "api-server")


def _answer_when_asked(api, task_id: str, option: str, answered: dict, done, timeout: float = 300) -> None:
    """Wait for the HITL request of task_id in any train run, then answer it through the REST API.
    If that fails, fail the running train runs through the API too: dag.test() would wait forever."""
    import time
    import urllib.parse

    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not done.is_set():
            details = api.request("GET", "/dags/train/dagRuns/~/hitlDetails")["hitl_details"]
            waiting = [d for d in details if d["task_instance"]["task_id"] == task_id and not d.get("responded_at")]
            if waiting:
                ti = waiting[0]["task_instance"]
                answered["request"] = waiting[0]
                run_id = urllib.parse.quote(ti["dag_run_id"], safe="")
                path = f"/dags/train/dagRuns/{run_id}/taskInstances/{task_id}/{ti['map_index']}/hitlDetails"
                answered["response"] = api.request("PATCH", path, {"chosen_options": [option], "params_input": {}})
                return
            time.sleep(1)
    except Exception as exc:  # noqa: BLE001 - reported by the test's assertions
        answered["error"] = repr(exc)
    for run in api.dag_runs("train"):
        if run["state"] == "running":
            api.request(
                "PATCH", f"/dags/train/dagRuns/{urllib.parse.quote(run['dag_run_id'], safe='')}", {"state": "failed"}
            )


@pytest.mark.warehouses("postgres")  # the approval path does not depend on the warehouse's dialect
def test_a_decision_that_needs_approval_waits_and_is_promoted_after_an_approving_answer(
    turku_warehouse, api_server, run_dag, monkeypatch
):
    """promotion.approval=always: the first champion (clearly better than both baselines) waits in
    the `approval` task until a person approves through the REST API, then becomes champion with
    the answer and its author recorded. (Which decisions wait under each mode: unit tests.)"""
    import threading

    from mlops.training.promotion import APPROVE

    name = use_model_name(monkeypatch, "rain_approval")
    monkeypatch.setenv(WAREHOUSE_CONN_ENV, json.dumps(turku_warehouse))  # not another module fixture's
    monkeypatch.setenv("MLOPS__PROMOTION__APPROVAL", "always")
    answered, done = {}, threading.Event()
    answerer = threading.Thread(target=_answer_when_asked, args=(api_server, "approval", APPROVE, answered, done))
    answerer.start()
    try:
        dag_run = run_dag("train", {**CONF, "reason": "approval test", "report_uri": "s3://reports/d.html"})
    finally:
        done.set()
        answerer.join()
    assert "error" not in answered and "response" in answered, answered
    assert dag_run.state == "success", task_states(dag_run)
    assert task_states(dag_run)["approval"] == "success"
    body = answered["request"]["body"]
    assert (
        "MLflow run of the candidate v1" in body
        and "[drift report that triggered this run](s3://reports/d.html)" in body
    )
    assert "| roc_auc |" in body and "persistence:" in body
    decision = xcom(dag_run, "promote")
    assert decision["outcome"] == "approved" and decision["champion_after"] == "1"
    who = api_server.username
    assert decision["approval"]["responded_by"]["name"] == who
    assert alias(name, "champion") == "1"
    assert client().get_model_version(name, "1").tags["decision.approved_by"] == who
    row = decisions(name).iloc[-1]
    assert row["outcome"] == "approved" and row["reason"].startswith(f"approved by {who} (gate: first_champion")


# ---------------------------------------------------------------- a window of 10,000 batches

MANY_BATCHES = 10_000


@pytest.fixture(scope="module")
def many_batches_warehouse(stack, tmp_path_factory):
    """The example data spread over 10,000 batches (a year of 9 files a day is 3,285): the
    batch ids are rewritten in one bulk UPDATE per id range, the rows stay the example's."""
    connection = own_warehouse(stack, tmp_path_factory, "train_many_batches")
    with config_env(**{WAREHOUSE_CONN_ENV: json.dumps(connection)}):
        load_observations()
        time_column = get_config().dataset.time_column
        engine = warehouse.engine()
        table = sa.Table("observations", sa.MetaData(), autoload_with=engine)
        with engine.begin() as conn:
            times = [row[0] for row in conn.execute(sa.select(table.c[time_column]).order_by(table.c[time_column]))]
            ids = [{"t": t, "b": f"batch-{i * MANY_BATCHES // len(times):05d}"} for i, t in enumerate(times)]
            update = table.update().where(table.c[time_column] == sa.bindparam("t")).values(batch_id=sa.bindparam("b"))
            conn.execute(update, ids)
        yield connection


@pytest.mark.warehouses("postgres")  # the bounded source does not depend on the warehouse's dialect
def test_a_window_of_10000_batches_trains_with_a_bounded_dataset_source(many_batches_warehouse, run_dag, monkeypatch):
    name = use_model_name(monkeypatch, "rain_many")
    # every row (the example has a few scattered years-old rows), hence every batch
    dag_run = run_dag("train", {**QUICK_CONF, "training_window_days": 36500, "search_iterations": 1})
    assert dag_run.state == "success", task_states(dag_run)
    parent, _ = parent_and_children(dag_run, name)
    inputs = {d.tags[0].value: d.dataset for d in parent.inputs.dataset_inputs}
    assert len(inputs["training"].source) < 65_535  # MLflow's cap on a dataset source
    source = json.loads(inputs["training"].source)
    assert source["batch_count"] == MANY_BATCHES
    assert (source["first_batch"], source["last_batch"]) == ("batch-00000", f"batch-{MANY_BATCHES - 1:05d}")
    with open(client().download_artifacts(parent.info.run_id, source["batch_ids_artifact"])) as fh:
        ids = json.load(fh)["batch_ids"]
    assert len(ids) == MANY_BATCHES
    assert hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest() == source["batch_ids_sha256"]


# ---------------------------------------------------------------- quiet logs

QUIET_SCRIPT = """
import json, logging, sys
# As in a task: log records go to the task log (here stdout); only stray output reaches stderr,
# which Airflow's task log shows as ERROR lines.
logging.basicConfig(stream=sys.stdout, level=logging.INFO)
from mlops.training.promotion import promote
from mlops.training.pipeline import register
a = json.load(open("args.json"))
registered = register(a["trained"], a["window"], a["trigger"])
promote(a["window"], a["trained"], registered, {"force_promote": False}, a["trigger"])
"""


def test_register_and_promote_write_nothing_to_stderr(
    turku_warehouse, champion_model, on_champion_model, tmp_path, monkeypatch
):
    """register and promote (MLflow registration, model download, bootstrap) in a fresh
    interpreter, as a task process runs them: nothing reaches stderr."""
    import subprocess
    import sys

    from mlops.config import PROJECT_ROOT

    monkeypatch.setenv(WAREHOUSE_CONN_ENV, json.dumps(turku_warehouse))  # the champion's, not another fixture's
    dag_run = champion_model["dag_run"]
    args = {
        "window": xcom(dag_run, "snapshot"), "trained": xcom(dag_run, "train_candidates"),
        "trigger": {"dag_id": "train", "run_id": "quiet", "triggered_by": "test", "reason": "quiet logs"},
    }  # fmt: skip
    (tmp_path / "args.json").write_text(json.dumps(args))
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "plugins")}
    env["MLOPS__MODEL__REGISTERED_NAME"] = f"{champion_model['name']}_quiet"
    done = subprocess.run(
        [sys.executable, "-c", QUIET_SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "registered" in done.stdout
