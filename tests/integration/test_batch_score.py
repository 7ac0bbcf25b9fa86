"""batch_score on the real services: MLflow registry (aliases), SeaweedFS (Parquet), SQLite warehouse.

The module registers its own small models (scikit-learn Pipelines that follow the model
contract) under a model name of its own, and puts observations straight into the warehouse,
so it depends on neither the train nor the ingest DAG.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from helpers import config_env, set_config, task_states

from mlops import labels
from mlops.config import PROJECT_ROOT, get_config
from mlops.io import warehouse
from mlops.scoring import batch as scoring

pytestmark = pytest.mark.integration

MODEL_NAME = "rain_in_4h_batch_score_test"
DATA = PROJECT_ROOT / "include" / "data" / "port_of_turku_weather.csv.gz"
# Two loaded batches, a month each, and a training window before them.
BATCHES = {
    "score-test-2016-10": ("2016-10-01", "2016-11-01"),
    "score-test-2016-11": ("2016-11-01", "2016-12-01"),
}
BAD_BATCH = "score-test-2016-12-bad"
BAD_RANGE = ("2016-12-01", "2017-01-01")
TRAIN_RANGE = ("2016-01-01", "2016-10-01")


def _turku() -> pd.DataFrame:
    frame = pd.read_csv(DATA)
    frame["Timestamp"] = pd.to_datetime(frame["Timestamp"])
    return frame.drop_duplicates("Timestamp").sort_values("Timestamp").reset_index(drop=True)


def _between(frame: pd.DataFrame, start: str, end: str) -> pd.DataFrame:
    return frame[(frame["Timestamp"] >= start) & (frame["Timestamp"] < end)].copy()


def _insert_batch(frame: pd.DataFrame, batch_id: str) -> None:
    """What ingest leaves behind: a batches row and the batch's observations."""
    loaded_at = pd.Timestamp.now(tz="UTC").strftime(warehouse.TIMESTAMP_FORMAT)
    rows = frame.copy()
    rows["Timestamp"] = rows["Timestamp"].dt.strftime(warehouse.TIMESTAMP_FORMAT)
    rows["batch_id"] = batch_id
    rows["loaded_at"] = loaded_at
    with warehouse.engine().begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO batches (batch_id, object_key, checksum, rows_in, rows_kept, rows_dropped, status, loaded_at)"
                " VALUES (:b, :k, :b, :n, :n, 0, 'loaded', :t)"  # checksum: one per loaded batch
            ),
            {
                "b": batch_id,
                "k": f"landing/{batch_id}.csv",
                "n": len(rows),
                "t": loaded_at,
            },
        )
        rows.to_sql("observations", conn, if_exists="append", index=False)


def _delete_test_rows() -> None:
    ids = [*BATCHES, BAD_BATCH]
    lo, hi = min(r[0] for r in [*BATCHES.values(), BAD_RANGE]), BAD_RANGE[1]
    with warehouse.engine().begin() as conn:
        for table in ("predictions", "batches"):
            conn.execute(
                sa.text(f"DELETE FROM {table} WHERE batch_id IN :ids").bindparams(sa.bindparam("ids", expanding=True)),
                {"ids": ids},
            )
        # Observations are unique by time: clear the months this module loads.
        conn.execute(
            sa.text('DELETE FROM observations WHERE "Timestamp" >= :lo AND "Timestamp" < :hi'),
            {"lo": lo, "hi": hi},
        )


def _register(
    frame: pd.DataFrame,
    features: list[str],
    alias: str,
    c: float = 1.0,
    extra_column: str | None = None,
) -> str:
    """Train a small Pipeline on the contract's inputs (time column + features), log it with a
    signature, register it and point `alias` at it. Returns the version."""
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from mlops.io.connections import configure_mlflow

    configure_mlflow()
    dataset = get_config().dataset
    data = labels.add_label(frame, dataset).dropna(subset=[dataset.label.name])
    columns = [dataset.time_column, *dataset.features]
    x = data[columns].copy()
    if extra_column:
        x[extra_column] = 1.0
    y = data[dataset.label.name].astype(int)
    model = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [
                        (
                            "num",
                            Pipeline(
                                [
                                    ("impute", SimpleImputer()),
                                    ("scale", StandardScaler()),
                                ]
                            ),
                            features,
                        )
                    ]
                ),
            ),
            ("classify", LogisticRegression(C=c, max_iter=500)),
        ]
    ).fit(x, y)
    mlflow.set_experiment("batch_score_test")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(x, model.predict_proba(x)[:, 1]),
            input_example=x.head(3),
            registered_model_name=MODEL_NAME,
            skops_trusted_types=["numpy.dtype"],
        )
    version = str(info.registered_model_version)
    mlflow.MlflowClient().set_registered_model_alias(MODEL_NAME, alias, version)
    return version


def _predictions(batch_id: str, role: str | None = None) -> pd.DataFrame:
    query = "SELECT * FROM predictions WHERE batch_id = :b" + (" AND role = :r" if role else "")
    with warehouse.engine().connect() as conn:
        frame = pd.read_sql_query(sa.text(query), conn, params={"b": batch_id, "r": role})
    return frame.sort_values(["role", "model_version", "Timestamp"]).reset_index(drop=True)


def _own_plan(models: dict) -> list[dict]:
    """What an asset-triggered run would score of this module's batches. Other modules of the
    session (test_drift_check's batch) leave batches of their own in the shared warehouse."""
    return [entry for entry in scoring.plan_batches(models) if entry["batch_id"] in BATCHES]


def _observations(batch_id: str) -> pd.DataFrame:
    with warehouse.engine().connect() as conn:
        return pd.read_sql_query(
            sa.text('SELECT * FROM observations WHERE batch_id = :b ORDER BY "Timestamp"'),
            conn,
            params={"b": batch_id},
        )


def _parquet(batch_id: str, version: str, role: str) -> pd.DataFrame:
    from mlops.io.connections import s3_client

    key = scoring.predictions_key(MODEL_NAME, version, role, batch_id)
    body = s3_client().get_object(Bucket=get_config().storage.bucket, Key=key)["Body"].read()
    return pq.read_table(io.BytesIO(body)).to_pandas()


def _object_keys(prefix: str) -> list[str]:
    from mlops.io.connections import s3_client

    listing = s3_client().list_objects_v2(Bucket=get_config().storage.bucket, Prefix=prefix)
    return [o["Key"] for o in listing.get("Contents", [])]


@pytest.fixture(scope="module")
def scoring_setup(stack):
    """Two loaded batches and a registered champion under this module's own model name."""
    with config_env(MLOPS__MODEL__REGISTERED_NAME=MODEL_NAME):
        warehouse.ensure_schema()
        _delete_test_rows()
        turku = _turku()
        for batch_id, (start, end) in BATCHES.items():
            _insert_batch(_between(turku, start, end), batch_id)
        train = _between(turku, *TRAIN_RANGE)
        champion = _register(train, get_config().dataset.features, "champion")
        try:
            yield {"turku": turku, "train": train, "champion": champion}
        finally:
            from mlops.io.connections import configure_mlflow

            configure_mlflow().MlflowClient().delete_registered_model(MODEL_NAME)
            _delete_test_rows()


def test_champion_scores_the_loaded_batches(scoring_setup, run_dag):
    # No params: what an update of the observations asset does.
    dag_run = run_dag("batch_score")
    assert dag_run.state == "success", task_states(dag_run)
    version = scoring_setup["champion"]
    model, _ = scoring.load_model(MODEL_NAME, version)
    dataset = get_config().dataset
    for batch_id in BATCHES:
        observed = _observations(batch_id)
        stored = _predictions(batch_id)
        assert len(observed) > 100
        assert stored["Timestamp"].tolist() == observed["Timestamp"].tolist()
        assert set(stored["role"]) == {"champion"}
        assert set(stored["model_name"]) == {MODEL_NAME} and set(stored["model_version"]) == {version}
        assert set(stored["threshold"]) == {get_config().model.decision_threshold}
        # The stored probability is the model's on the very same rows, computed independently here.
        x = observed[[dataset.time_column, *dataset.features]].assign(Timestamp=pd.to_datetime(observed["Timestamp"]))
        np.testing.assert_allclose(stored["probability"], model.predict_proba(x)[:, 1], rtol=1e-12)
        assert (stored["predicted_label"] == (stored["probability"] >= 0.5).astype(int)).all()
        assert stored["probability"].nunique() > 100
        # Parquet in the object store, keyed by model version and batch id: the same predictions.
        parquet = _parquet(batch_id, version, "champion")
        assert len(parquet) == len(stored)
        np.testing.assert_array_equal(parquet["probability"].to_numpy(), stored["probability"].to_numpy())
        assert (parquet["Timestamp"].dt.strftime(warehouse.TIMESTAMP_FORMAT) == stored["Timestamp"]).all()
    # Nothing pending any more: a second asset-triggered run scores nothing of ours.
    assert _own_plan(scoring.resolve_models()) == []


def test_small_chunks_give_the_same_predictions(scoring_setup):
    batch_id = next(iter(BATCHES))
    before = _predictions(batch_id)
    summary = scoring.score_batch(batch_id, scoring.resolve_models(), chunk_rows=97)
    after = _predictions(batch_id)
    assert summary["rows"] == len(before) == len(after)
    pd.testing.assert_frame_equal(before.drop(columns="scored_at"), after.drop(columns="scored_at"))


def test_rerun_replaces_rows_and_never_duplicates(scoring_setup, run_dag):
    batch_id = next(iter(BATCHES))
    before = _predictions(batch_id)
    keys_before = _object_keys(get_config().storage.predictions_prefix)
    dag_run = run_dag("batch_score", {"batch_id": batch_id})
    assert dag_run.state == "success", task_states(dag_run)
    after = _predictions(batch_id)
    assert len(after) == len(before) == len(_observations(batch_id))
    pd.testing.assert_frame_equal(before.drop(columns="scored_at"), after.drop(columns="scored_at"))
    assert after["scored_at"].iloc[0] >= before["scored_at"].iloc[0]
    # Same object keys: the Parquet file was replaced, no staging leftovers.
    assert _object_keys(get_config().storage.predictions_prefix) == keys_before
    assert len(_parquet(batch_id, scoring_setup["champion"], "champion")) == len(after)


def test_challenger_is_scored_in_the_shadow_and_stored_apart(scoring_setup, run_dag):
    champion = scoring_setup["champion"]
    features = get_config().dataset.features
    challenger = _register(scoring_setup["train"], features[:3], "challenger", c=0.01)
    assert challenger != champion
    batch_id, (start, end) = list(BATCHES.items())[1]
    champion_before = _predictions(batch_id, "champion")
    # Backfill by time range: the batch overlapping it is scored with both versions.
    dag_run = run_dag("batch_score", {"start": start, "end": end})
    assert dag_run.state == "success", task_states(dag_run)
    champion_after = _predictions(batch_id, "champion")
    shadow = _predictions(batch_id, "challenger")
    # The served predictions are still the champion's, unchanged.
    assert set(champion_after["model_version"]) == {champion}
    pd.testing.assert_frame_equal(
        champion_before.drop(columns="scored_at"),
        champion_after.drop(columns="scored_at"),
    )
    assert set(shadow["model_version"]) == {challenger}
    assert shadow["Timestamp"].tolist() == champion_after["Timestamp"].tolist()
    assert not np.allclose(shadow["probability"], champion_after["probability"])
    assert len(_parquet(batch_id, challenger, "challenger")) == len(shadow)
    # The batch outside the range was left alone; an asset-triggered run now adds its shadow scores only.
    other = next(iter(BATCHES))
    assert _predictions(other, "challenger").empty
    assert _own_plan(scoring.resolve_models()) == [{"batch_id": other, "roles": ["challenger"]}]


def test_signature_mismatch_fails_and_writes_nothing(scoring_setup, run_dag, stack):
    if stack.warehouse != "sqlite":
        pytest.skip("PostgreSQL refuses text in a numeric column at load time; the missing-column case runs here")
    bad = _between(scoring_setup["turku"], *BAD_RANGE).astype({"Temperature_C": object})
    bad.iloc[5, bad.columns.get_loc("Temperature_C")] = "warm"
    _insert_batch(bad, BAD_BATCH)
    prefix = get_config().storage.predictions_prefix
    keys_before = _object_keys(prefix)
    dag_run = run_dag("batch_score", {"batch_id": BAD_BATCH})
    assert dag_run.state == "failed"
    states = {(ti.task_id, ti.map_index): ti.state for ti in dag_run.get_task_instances()}
    assert states[("score", 0)] == "failed"
    assert _predictions(BAD_BATCH).empty
    assert _object_keys(prefix) == keys_before
    with pytest.raises(scoring.ScoringInputError, match="Temperature_C.*warm"):
        scoring.score_batch(BAD_BATCH, scoring.resolve_models())
    # In a group, the bad batch is recorded and the others are still scored; the group fails at the end.
    good = next(iter(BATCHES))
    before = _predictions(good)
    with warehouse.engine().begin() as conn:
        conn.execute(sa.text("DELETE FROM predictions WHERE batch_id = :b"), {"b": good})
    group = {"label": "g", "batches": [{"batch_id": b, "roles": ["champion"]} for b in (BAD_BATCH, good)]}
    with pytest.raises(scoring.ScoringInputError, match=f"1 of 2 batch.*{BAD_BATCH}.*Temperature_C"):
        scoring.score_group(group, scoring.resolve_models())
    pd.testing.assert_frame_equal(_predictions(good).drop(columns="scored_at"), before.drop(columns="scored_at"))
    assert _predictions(BAD_BATCH).empty


def test_model_expecting_a_column_the_warehouse_lacks_fails_by_name(scoring_setup, run_dag):
    batch_id = next(iter(BATCHES))
    before = _predictions(batch_id)
    keys_before = _object_keys(get_config().storage.predictions_prefix)
    version = _register(scoring_setup["train"], get_config().dataset.features, "champion", extra_column="Dew_point_C")
    try:
        dag_run = run_dag("batch_score", {"batch_id": batch_id})
        assert dag_run.state == "failed"
        assert {(ti.task_id, ti.map_index): ti.state for ti in dag_run.get_task_instances()}[("score", 0)] == "failed"
        assert _object_keys(get_config().storage.predictions_prefix) == keys_before
        with pytest.raises(scoring.ScoringInputError, match="Dew_point_C"):
            scoring.score_batch(batch_id, scoring.resolve_models())
        assert version not in set(_predictions(batch_id, "champion")["model_version"])
        pd.testing.assert_frame_equal(_predictions(batch_id), before)
    finally:
        from mlops.io.connections import configure_mlflow

        configure_mlflow().MlflowClient().set_registered_model_alias(MODEL_NAME, "champion", scoring_setup["champion"])


def test_without_a_champion_the_run_is_skipped(scoring_setup, run_dag, monkeypatch):
    set_config(monkeypatch, MLOPS__MODEL__REGISTERED_NAME="no_such_model_yet")
    try:
        assert scoring.resolve_models() is None
        dag_run = run_dag("batch_score")
        assert dag_run.state == "success"
        assert task_states(dag_run)["plan"] == "skipped"
    finally:
        set_config(monkeypatch, MLOPS__MODEL__REGISTERED_NAME=MODEL_NAME)


def _score_in_subprocess(batch_id: str, crash_at: str, tmp_path) -> int:
    """score_batch of the champion in a fresh interpreter killed (SIGKILL) at crash_at: its exit code."""
    import os
    import subprocess
    import sys

    from mlops.crashpoints import CRASH_AT_ENV

    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "plugins"), CRASH_AT_ENV: crash_at}
    code = (
        "from mlops.scoring.batch import resolve_models, score_batch; "
        f"score_batch({batch_id!r}, resolve_models(), ['champion'])"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, timeout=300).returncode


@pytest.mark.warehouses("postgres")
def test_a_killed_scoring_never_shows_a_file_without_rows_and_the_retry_completes_it(scoring_setup, tmp_path):
    from mlops.io.connections import s3_client

    version = scoring_setup["champion"]
    first, batch_id = list(BATCHES)
    final_key = scoring.predictions_key(MODEL_NAME, version, "champion", batch_id)
    staging = f"{get_config().storage.predictions_prefix}_staging/"
    bucket = get_config().storage.bucket
    # The batch as if never scored.
    with warehouse.engine().begin() as conn:
        conn.execute(sa.text("DELETE FROM predictions WHERE batch_id = :b"), {"b": batch_id})
    s3_client().delete_object(Bucket=bucket, Key=final_key)
    since = pd.Timestamp.now(tz="UTC").floor("s")

    # Killed after staging, before the commit: neither rows nor a final file, a staged object.
    assert _score_in_subprocess(batch_id, "scoring_staged", tmp_path) == -9
    assert _predictions(batch_id).empty and final_key not in _object_keys(final_key)
    assert _object_keys(staging)
    # Killed after the commit, before publishing: rows, still no final file.
    assert _score_in_subprocess(batch_id, "scoring_rows_committed", tmp_path) == -9
    assert len(_predictions(batch_id)) == len(_observations(batch_id))
    assert final_key not in _object_keys(final_key)
    # The next run removes the leftovers of killed attempts.
    assert scoring.remove_staging(pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=1)) >= 2
    assert _object_keys(staging) == []

    # The retry of the group: the batch whose file is missing is scored again and published.
    group = {"label": "kill test", "batches": [{"batch_id": b, "roles": ["champion"]} for b in (first, batch_id)]}
    since_text = since.strftime(warehouse.TIMESTAMP_FORMAT)
    done = scoring.score_group(group, scoring.resolve_models(), since=since_text)
    assert done["batches"] == [first, batch_id]
    assert len(_parquet(batch_id, version, "champion")) == len(_predictions(batch_id)) == len(_observations(batch_id))
    # A further retry finds both done.
    assert scoring.score_group(group, scoring.resolve_models(), since=since_text)["batches"] == []


def _score_group_in_subprocess(batch_ids: list[str], crash_at: str, tmp_path) -> int:
    """score_group of the champion on `batch_ids` in a fresh interpreter killed (SIGKILL) at
    crash_at: its exit code."""
    import os
    import subprocess
    import sys

    from mlops.crashpoints import CRASH_AT_ENV

    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "plugins"), CRASH_AT_ENV: crash_at}
    group = {"label": "kill", "batches": [{"batch_id": b, "roles": ["champion"]} for b in batch_ids]}
    code = f"from mlops.scoring.batch import resolve_models, score_group; score_group({group!r}, resolve_models())"
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, timeout=300).returncode


@pytest.mark.warehouses("postgres")
def test_a_group_killed_around_its_one_commit_never_shows_a_file_without_rows_and_the_retry_equals_a_clean_run(
    scoring_setup, tmp_path
):
    """Small batches of a group are committed in one transaction and published after it: a kill
    before it leaves nothing (not even staging objects), a kill after it leaves every batch's rows
    and no file; the retry then scores each batch again and equals an uninterrupted run."""
    version = scoring_setup["champion"]
    ids = list(BATCHES)
    group = {"label": "kill test", "batches": [{"batch_id": b, "roles": ["champion"]} for b in ids]}
    finals = {b: scoring.predictions_key(MODEL_NAME, version, "champion", b) for b in ids}
    staging = f"{get_config().storage.predictions_prefix}_staging/"
    scoring.score_group(group, scoring.resolve_models())  # the uninterrupted run
    clean = {b: _predictions(b).drop(columns="scored_at") for b in ids}

    def clear() -> None:  # every batch as if never scored
        from mlops.io.connections import s3_client

        with warehouse.engine().begin() as conn:
            for b in ids:
                conn.execute(sa.text("DELETE FROM predictions WHERE batch_id = :b"), {"b": b})
        for key in finals.values():
            s3_client().delete_object(Bucket=get_config().storage.bucket, Key=key)

    def files() -> set[str]:
        return {b for b, key in finals.items() if key in _object_keys(key)}

    clear()
    scoring.remove_staging(pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=1))
    since = pd.Timestamp.now(tz="UTC").floor("s").strftime(warehouse.TIMESTAMP_FORMAT)
    # Killed after predicting, before the commit: no rows, no files, no staging objects.
    assert _score_group_in_subprocess(ids, "scoring_group_predicted", tmp_path) == -9
    assert all(_predictions(b).empty for b in ids) and files() == set()
    assert _object_keys(staging) == []
    # Killed right after the one commit: every batch's rows, no file yet.
    assert _score_group_in_subprocess(ids, "scoring_group_committed", tmp_path) == -9
    assert [len(_predictions(b)) for b in ids] == [len(_observations(b)) for b in ids]
    assert files() == set()

    # The retry scores both again (their files are missing) and equals the uninterrupted run.
    assert scoring.score_group(group, scoring.resolve_models(), since=since)["batches"] == ids
    for b in ids:
        stored = _predictions(b)
        pd.testing.assert_frame_equal(stored.drop(columns="scored_at"), clean[b])
        assert len(_parquet(b, version, "champion")) == len(stored)
    assert scoring.score_group(group, scoring.resolve_models(), since=since)["batches"] == []
