"""A group of small batches is predicted together: one predict_proba per chunk of rows, not one
per batch, with the same predictions, and still one commit and one Parquet object per batch.

Real SQLite warehouse (the project's schema) and a real scikit-learn model (its predict_proba
calls counted by a thin wrapper); the object store is an in-memory stand-in (unit tests run no
services; tests/integration/test_batch_score.py scores groups against SeaweedFS).
"""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from example_warehouse import WAREHOUSE_CONN_ENV
from mlops.config import get_config
from mlops.io import warehouse
from mlops.scoring import batch as scoring

CHUNK_ROWS = 500
# 14 small batches, one larger than a chunk (streamed in two chunks), 16 small.
SIZES = [40] * 14 + [600] + [40] * 16


class CountingModel:
    """A fitted scikit-learn model whose predict_proba calls are counted."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def predict_proba(self, x):
        self.calls += 1
        return self.model.predict_proba(x)


class ObjectStore:
    """The S3 calls scoring makes, on a dict (and how many of each)."""

    def __init__(self):
        self.objects: dict[str, bytes] = {}
        self.calls: dict[str, int] = {}

    def __getattribute__(self, name):
        if not name.startswith("_") and name not in ("objects", "calls"):
            self.calls[name] = self.calls.get(name, 0) + 1
        return object.__getattribute__(self, name)

    def put_object(self, Bucket, Key, Body):  # noqa: N803 - boto3's names
        self.objects[Key] = bytes(Body)

    def upload_file(self, path, bucket, key):
        self.objects[key] = open(path, "rb").read()  # noqa: SIM115

    def copy_object(self, Bucket, Key, CopySource):  # noqa: N803
        self.objects[Key] = self.objects[CopySource["Key"]]

    def delete_object(self, Bucket, Key):  # noqa: N803
        self.objects.pop(Key, None)

    def delete_objects(self, Bucket, Delete):  # noqa: N803
        for item in Delete["Objects"]:
            self.objects.pop(item["Key"], None)


def _observations(sizes: list[int]) -> pd.DataFrame:
    dataset = get_config().dataset
    rng = np.random.default_rng(7)
    n = sum(sizes)
    frame = pd.DataFrame({name: rng.normal(10, 5, n) for name in dataset.features})
    frame["Humidity"] = rng.uniform(0, 1, n)
    frame["Wind_bearing_degrees"] = rng.integers(0, 360, n)
    frame["Current_weather_condition"] = rng.integers(0, 2, n)
    times = pd.Timestamp("2020-01-01") + pd.to_timedelta(np.arange(n), unit="h")
    frame.insert(0, dataset.time_column, times.strftime(warehouse.TIMESTAMP_FORMAT))
    frame["batch_id"] = np.repeat([f"b{i:02d}" for i in range(len(sizes))], sizes)
    frame["loaded_at"] = "2026-01-01 00:00:00"
    return frame


@pytest.fixture()
def group(tmp_path, monkeypatch):
    """(batch ids, scorers with a counting model, clients) on a SQLite warehouse of SIZES rows."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline

    monkeypatch.setenv(WAREHOUSE_CONN_ENV, json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "w.db")}))
    features = get_config().dataset.features
    observations = _observations(SIZES)
    warehouse.ensure_schema()
    engine = warehouse.engine()
    with engine.begin() as conn:
        observations.to_sql("observations", conn, if_exists="append", index=False)
    y = (observations["Temperature_C"] + observations["Humidity"] * 5 > 12).astype(int)
    columns = ColumnTransformer([("num", SimpleImputer(), features)])
    model = make_pipeline(columns, HistGradientBoostingClassifier(max_iter=20, random_state=0))
    model.fit(observations, y)
    scorers = {"champion": ("1", CountingModel(model), scoring.input_spec(None))}
    return sorted(observations["batch_id"].unique()), scorers, scoring.Clients(engine, ObjectStore())


def _stored(engine) -> pd.DataFrame:
    sql = 'SELECT batch_id, "Timestamp", probability, predicted_label FROM predictions ORDER BY "Timestamp"'
    with engine.connect() as conn:
        return pd.read_sql_query(sa.text(sql), conn)


def test_a_group_of_small_batches_predicts_once_per_chunk_with_the_predictions_of_each_alone(group):
    batch_ids, scorers, clients = group
    model = scorers["champion"][1]
    for batch_id in batch_ids:  # the reference: each batch scored alone
        scoring.score_with(batch_id, "m", scorers, CHUNK_ROWS, clients)
    alone, alone_calls = _stored(clients.engine), model.calls
    assert alone_calls == len(SIZES) + 1  # the larger batch took two chunks

    model.calls = 0
    planned = [{"batch_id": b, "roles": ["champion"]} for b in batch_ids]
    summaries, failures = scoring.score_batches(planned, "m", scorers, chunk_rows=CHUNK_ROWS, clients=clients)

    assert failures == {}
    assert [s["batch_id"] for s in summaries] == batch_ids
    assert [s["rows"] for s in summaries] == SIZES
    # 14 small batches: 12 + 2 together (at most 500 rows), the larger one 2 chunks, 16: 12 + 4.
    assert model.calls == 6
    together = _stored(clients.engine)
    assert len(together) == sum(SIZES)  # replaced, not appended
    pd.testing.assert_frame_equal(together, alone, check_exact=True)
    # One published Parquet file per batch, with that batch's rows; no staging objects left.
    objects = clients.s3.objects
    assert not [key for key in objects if "/_staging/" in key]
    for batch_id, rows in zip(batch_ids, SIZES, strict=True):
        key = scoring.predictions_key("m", "1", "champion", batch_id)
        parquet = pd.read_parquet(io.BytesIO(objects[key]))
        assert len(parquet) == rows and set(parquet["batch_id"]) == {batch_id}


def test_a_bad_batch_among_small_ones_fails_alone_by_name(group):
    batch_ids, scorers, clients = group
    bad = batch_ids[3]
    with clients.engine.begin() as conn:
        conn.execute(sa.text("UPDATE observations SET \"Humidity\" = 'wet' WHERE batch_id = :b"), {"b": bad})
    planned = [{"batch_id": b, "roles": ["champion"]} for b in batch_ids[:6]]
    summaries, failures = scoring.score_batches(planned, "m", scorers, chunk_rows=CHUNK_ROWS, clients=clients)
    assert list(failures) == [bad]
    assert isinstance(failures[bad], scoring.ScoringInputError)
    assert repr(bad) in str(failures[bad]) and "Humidity" in str(failures[bad])
    assert [s["batch_id"] for s in summaries] == [b for b in batch_ids[:6] if b != bad]
    stored = _stored(clients.engine)
    assert sorted(stored["batch_id"].unique()) == [b for b in batch_ids[:6] if b != bad]


def test_a_group_of_small_batches_pays_one_query_one_commit_and_one_put_per_file(group):
    """The per-batch costs of a group of small batches: their rows are read in one query and
    swapped in with one transaction, and each batch's file takes one PUT (no staging, no copy)."""
    batch_ids, scorers, clients = group
    small = [b for b, rows in zip(batch_ids, SIZES, strict=True) if rows < CHUNK_ROWS][:12]  # 480 rows
    statements = []  # every SQL statement sqlite3 runs, through its own trace hook
    sa.event.listen(
        clients.engine, "checkout", lambda dbapi, record, proxy: dbapi.set_trace_callback(statements.append)
    )
    planned = [{"batch_id": b, "roles": ["champion"]} for b in small]
    summaries, failures = scoring.score_batches(planned, "m", scorers, chunk_rows=CHUNK_ROWS, clients=clients)
    assert failures == {} and [s["batch_id"] for s in summaries] == small
    reads = [sql for sql in statements if re.search(r"\b(FROM|JOIN) observations\b", sql)]
    assert len(reads) == 2  # the sizes of the group's batches, then their rows
    assert len([sql for sql in statements if sql.strip().upper() == "COMMIT"]) == 1
    assert clients.s3.calls == {"put_object": len(small)}
    assert len(_stored(clients.engine)) == 40 * len(small)


def test_a_batch_the_warehouse_refuses_in_the_group_commit_fails_alone(group):
    """If the one transaction of the held batches fails, each is committed alone: the refused batch
    fails by name with no file, the others are stored and published."""
    batch_ids, scorers, clients = group
    small = batch_ids[:6]
    refused = small[2]
    with clients.engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TRIGGER refuse BEFORE INSERT ON predictions WHEN NEW.batch_id = :b "
                "BEGIN SELECT RAISE(ABORT, 'refused by the warehouse'); END".replace(":b", f"'{refused}'")
            )
        )
    planned = [{"batch_id": b, "roles": ["champion"]} for b in small]
    summaries, failures = scoring.score_batches(planned, "m", scorers, chunk_rows=CHUNK_ROWS, clients=clients)
    assert list(failures) == [refused] and "refused by the warehouse" in str(failures[refused])
    assert [s["batch_id"] for s in summaries] == [b for b in small if b != refused]
    assert sorted(_stored(clients.engine)["batch_id"].unique()) == [b for b in small if b != refused]
    published = {key for key in clients.s3.objects if "/_staging/" not in key}
    assert published == {scoring.predictions_key("m", "1", "champion", b) for b in small if b != refused}
