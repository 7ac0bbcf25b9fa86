"""drift_check end to end on the real services: MLflow registry, object store, warehouse, Airflow DB.

A champion is built here the way train builds one (a scikit-learn Pipeline logged with a
reference profile of its training data, registered with the alias champion and holdout tags).
Observations and the champion's predictions go straight into the warehouse, in 2031 so
they are the latest data whatever other tests loaded: January is like the training data,
February is shifted (winter). Triggered train runs stay queued (no scheduler runs here), which
is what the in-flight deduplication must see; the cooldown test finishes them by hand.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from helpers import config_env, s3_client, task_states, xcom

from mlops.config import get_config
from mlops.io import warehouse
from mlops.monitoring.profile import PROFILE_ARTIFACT_PATH, PROFILE_FILE, build_profile

pytestmark = pytest.mark.integration

CONFIG = get_config()
DATASET = CONFIG.dataset
TIME = DATASET.time_column
CALM_END = "2031-01-31 00:00:00"  # end of the January segment (no shift)
TRAIN = "train"


def weather(start: str, hours: int, winter: bool, seed: int) -> pd.DataFrame:
    """Synthetic hourly weather in the data set's columns; winter shifts temperature, humidity, visibility."""
    rng = np.random.default_rng(seed)
    humidity = np.clip(rng.normal(0.92 if winter else 0.7, 0.05 if winter else 0.1, hours), 0, 1)
    rain = (rng.uniform(size=hours) < 1 / (1 + np.exp(-12 * (humidity - 0.8)))).astype(int)
    return pd.DataFrame(
        {
            TIME: pd.date_range(start, periods=hours, freq="1h"),
            "Location": "Turku",
            "Temperature_C": rng.normal(-4 if winter else 17, 4, hours),
            "Humidity": humidity,
            "Wind_speed_kmph": rng.gamma(2.0, 6.0, hours),
            "Wind_bearing_degrees": rng.integers(0, 361, hours),
            "Visibility_km": np.clip(rng.normal(5 if winter else 12, 2.5, hours), 0, 100),
            "Pressure_millibars": rng.normal(1013, 8, hours),
            "Current_weather_condition": rain,
            "Future_weather_condition": pd.array([None] * hours, dtype="Int64"),
        }
    )


def _pipeline():
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    numeric = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())])
    return Pipeline(
        [("features", ColumnTransformer([("numeric", numeric, DATASET.features)])), ("model", LogisticRegression())]
    )


@pytest.fixture(scope="module")
def champion(stack):
    """A registered champion with its reference profile, like train produces."""
    import mlflow
    from mlflow.models import infer_signature

    from mlops.labels import add_label
    from mlops.monitoring.drift import realized_metrics

    mlflow.set_tracking_uri(stack.mlflow_url)
    frame = add_label(weather("2030-06-01", 2000, winter=False, seed=1), DATASET).dropna(subset=[DATASET.label.name])
    train, holdout = frame.iloc[:1600], frame.iloc[1600:]
    columns = [TIME, *DATASET.features]
    model = _pipeline().fit(train[columns], train[DATASET.label.name].astype(int))
    mlflow.set_experiment("drift_check_test")
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(train[columns], model.predict_proba(train[columns])[:, 1]),
            input_example=train[columns].head(3),
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
        )
        scores = model.predict_proba(train[columns])[:, 1]
        mlflow.log_dict(build_profile(train, DATASET, scores=scores), f"{PROFILE_ARTIFACT_PATH}/{PROFILE_FILE}")
    name = CONFIG.model.registered_name
    version = mlflow.register_model(info.model_uri, name)
    client = mlflow.MlflowClient()
    proba = model.predict_proba(holdout[columns])[:, 1]
    metrics = realized_metrics(holdout[DATASET.label.name], proba, (proba >= 0.5).astype(int))
    for metric in ("accuracy", "f1", "brier"):
        client.set_model_version_tag(name, version.version, f"holdout_{metric}", str(metrics[metric]))
    client.set_registered_model_alias(name, "champion", version.version)
    return {"model": model, "name": name, "version": str(version.version), "run_id": run.info.run_id}


@pytest.fixture(scope="module")
def observations(champion):
    """January (like the training data) then February (winter) of 2031, with champion predictions."""
    warehouse.ensure_schema()
    calm = weather("2031-01-01 01:00", 30 * 24, winter=False, seed=2)
    shifted = weather("2031-02-01 01:00", 30 * 24, winter=True, seed=3)
    frame = pd.concat([calm, shifted], ignore_index=True)
    model = champion["model"]
    proba = model.predict_proba(frame[[TIME, *DATASET.features]])[:, 1]
    stamps = frame[TIME].dt.strftime(warehouse.TIMESTAMP_FORMAT)
    now = dt.datetime.now(dt.UTC).strftime(warehouse.TIMESTAMP_FORMAT)
    predictions = pd.DataFrame(
        {
            "batch_id": "drift-test",
            TIME: stamps,
            "model_name": champion["name"],
            "model_version": champion["version"],
            "role": "champion",
            "probability": proba,
            "predicted_label": (proba >= 0.5).astype(int),
            "threshold": 0.5,
            "scored_at": now,
        }
    )
    rows = frame.assign(**{TIME: stamps, "batch_id": "drift-test", "loaded_at": now})
    engine = warehouse.engine()
    quoted = warehouse.quote(TIME)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DELETE FROM observations WHERE {quoted} >= '2031-01-01'"))
        conn.execute(sa.text(f"DELETE FROM predictions WHERE {quoted} >= '2031-01-01'"))
    rows.to_sql("observations", engine, if_exists="append", index=False)
    predictions.to_sql("predictions", engine, if_exists="append", index=False)
    return frame


@pytest.fixture()
def no_train_runs(stack):
    """Each test starts without train runs (other tests of the session may have made some)."""
    _delete_train_runs()
    yield
    _delete_train_runs()


def _delete_train_runs():
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        session.execute(sa.delete(TaskInstance).where(TaskInstance.dag_id == TRAIN))
        session.execute(sa.delete(DagRun).where(DagRun.dag_id == TRAIN))


def train_runs() -> list:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = session.scalars(sa.select(DagRun).where(DagRun.dag_id == TRAIN)).all()
        session.expunge_all()
        return runs


def check(run_dag, **params):
    """Run drift_check with these params and every other param at its default (None)."""
    return run_dag("drift_check", conf=params)


def drift_run_row(dag_run) -> dict:
    from mlops.monitoring.check import drift_run_id

    with warehouse.engine().connect() as conn:
        row = (
            conn.execute(
                sa.text("SELECT * FROM drift_runs WHERE drift_run_id = :id"), {"id": drift_run_id(dag_run.run_id)}
            )
            .mappings()
            .one()
        )
        features = (
            conn.execute(
                sa.text("SELECT * FROM drift WHERE drift_run_id = :id ORDER BY feature"), {"id": row["drift_run_id"]}
            )
            .mappings()
            .all()
        )
    return {**row, "features": {f["feature"]: dict(f) for f in features}}


def s3_text(stack, uri: str) -> str:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return s3_client(stack).get_object(Bucket=bucket, Key=key)["Body"].read().decode()


def test_data_like_the_training_data_triggers_nothing(run_dag, stack, observations, no_train_runs):
    dag_run = check(run_dag, window_end=CALM_END)
    assert dag_run.state == "success"
    assert task_states(dag_run) == {
        "champion": "success",
        "measure": "success",
        "report": "success",
        "decide_retrain": "success",
        "trigger_train": "skipped",
    }
    row = drift_run_row(dag_run)
    assert row["rule_fired"] == 0 and row["retrain_decision"] == "not needed"
    assert row["window_start"] == "2031-01-01 00:00:00" and row["window_end"] == CALM_END
    assert set(row["features"]) == set(DATASET.features)
    assert not any(f["drifted"] for f in row["features"].values()), row["features"]
    assert row["n_labeled"] > 600 and row["realized_accuracy"] is not None and row["holdout_accuracy"] is not None
    assert train_runs() == []
    page = s3_text(stack, row["report_uri"])
    assert row["report_uri"].endswith(f"drift/{row['drift_run_id']}/report.html")
    assert page.count("data:image/png;base64,") == len(DATASET.features) + 2
    assert "champion estimated (CBPE, whole window)" in page and "calibration unknown" in page
    result = json.loads(s3_text(stack, row["report_uri"].replace("report.html", "result.json")))
    # The reference (June-July 2030) has no January nor its neighbours: the whole reference, said so.
    assert result["season"]["window_shares"] == {"1": 1.0} and result["season"]["fallback_strata"] == ["1"]
    assert "compared with the whole reference there" in result["season"]["notes"][0]
    estimated, realized = result["performance"]["estimated"], result["performance"]["champion"]
    assert estimated["n"] == realized["n_predictions"] and estimated["unlabeled"]["n"] == estimated["n"] - realized["n"]
    assert abs(estimated["on_labeled"]["accuracy"] - realized["accuracy"]) < 0.1
    assert result["performance"]["bucket"] == "D" and len(realized["periods"]) >= 29


def test_shift_triggers_train_once_and_ten_alerts_in_a_row_give_one_run(run_dag, stack, observations, no_train_runs):
    first = check(run_dag)  # the window ends at the latest observation: February
    assert task_states(first)["trigger_train"] == "success", task_states(first)
    row = drift_run_row(first)
    assert row["window_end"] == observations[TIME].max().strftime(warehouse.TIMESTAMP_FORMAT)
    drifted = json.loads(row["drifted_features"])
    assert {"Temperature_C", "Humidity", "Visibility_km"} <= set(drifted)
    assert "Pressure_millibars" not in drifted and "Wind_bearing_degrees" not in drifted
    assert row["features"]["Temperature_C"]["psi"] > 1 and row["features"]["Temperature_C"]["p_value"] < 1e-6
    runs = train_runs()
    assert len(runs) == 1
    assert runs[0].run_id == f"drift__{row['drift_run_id']}" and runs[0].state == "queued"
    # The UI's link: TriggerDagRunOperator's "Triggered DAG" link (its XCom) opens that train run.
    assert xcom(first, "trigger_train", "trigger_run_id") == runs[0].run_id
    assert xcom(first, "trigger_train", "_link_TriggerDagRunLink").endswith(f"/dags/{TRAIN}/runs/{runs[0].run_id}")
    conf = runs[0].conf
    assert set(conf) == {"reason", "drifted_features", "report_uri"}
    assert conf["drifted_features"] == drifted and conf["report_uri"] == row["report_uri"]
    assert "features drifted" in conf["reason"]
    assert "RETRAINING RULE FIRED" in s3_text(stack, conf["report_uri"])

    for _ in range(9):
        again = check(run_dag)
        assert task_states(again)["trigger_train"] == "skipped"
        decision = drift_run_row(again)
        assert decision["rule_fired"] == 1 and decision["retrain_decision"] == "skip"
        assert "queued or running" in decision["retrain_detail"]
    assert len(train_runs()) == 1


def test_cooldown_after_the_last_train_run_is_respected(run_dag, observations, no_train_runs):
    check(run_dag)
    (run,) = train_runs()
    _finish(run.run_id, hours_ago=1)
    cooled = check(run_dag)
    assert task_states(cooled)["trigger_train"] == "skipped"
    row = drift_run_row(cooled)
    assert row["retrain_decision"] == "skip" and "cooldown" in row["retrain_detail"], row["retrain_detail"]
    assert len(train_runs()) == 1

    _finish(run.run_id, hours_ago=CONFIG.drift.cooldown_hours + 1)
    later = check(run_dag)
    assert task_states(later)["trigger_train"] == "success"
    assert len(train_runs()) == 2


def _finish(run_id: str, hours_ago: float) -> None:
    """Mark a train run successful, ended hours_ago (as if the scheduler had run it)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    ended = dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours_ago)
    with create_session() as session:
        session.execute(
            sa.update(DagRun)
            .where(DagRun.dag_id == TRAIN, DagRun.run_id == run_id)
            .values(
                state="success",
                logical_date=ended - dt.timedelta(minutes=30),
                run_after=ended - dt.timedelta(minutes=30),
                start_date=ended - dt.timedelta(minutes=20),
                end_date=ended,
            )
        )


def test_params_override_thresholds_for_a_manual_run(run_dag, observations, no_train_runs):
    dag_run = check(run_dag, psi_threshold=50.0, performance_drop=1.0)
    row = drift_run_row(dag_run)
    assert row["rule_fired"] == 0 and row["n_drifted"] == 0
    assert task_states(dag_run)["trigger_train"] == "skipped"
    assert train_runs() == []


def test_without_a_champion_the_run_is_skipped(run_dag, monkeypatch, stack, no_train_runs):
    with config_env(MLOPS__MODEL__REGISTERED_NAME="no_such_model"):
        dag_run = check(run_dag)
    assert task_states(dag_run)["champion"] == "skipped"
    assert task_states(dag_run)["trigger_train"] == "skipped"
    assert train_runs() == []
