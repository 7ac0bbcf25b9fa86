"""A batch's rows are found through its recorded time span (batches.first_time/last_time), not an
index on batch_id: every read of a batch (ingest's counts, batch_score's keyset chunks, group
reads and sizes, the batch profile's rows) returns exactly the rows a full scan of
`WHERE batch_id = ...` returns, whatever the batches' overlaps, order and conflicts.

Property test on a SQLite warehouse file (the real load path, no services): batches cut from the
example data at random offsets, shuffled, some values changed (conflicts), loaded in small
chunks under ingest.on_conflict keep_first or replace (replace moves rows to the later batch).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import sqlalchemy as sa
from helpers import config_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops.config import PROJECT_ROOT, get_config
from mlops.ingest import load as ingest_load
from mlops.ingest import pipeline as ingest
from mlops.io import warehouse
from mlops.monitoring import batch_profile
from mlops.scoring import batch as scoring

EXAMPLE_ROWS = 400
batch_spec = st.tuples(
    st.integers(0, EXAMPLE_ROWS - 1),  # first row of the example
    st.integers(1, 150),  # rows
    st.booleans(),  # shuffled
    st.integers(0, 5),  # every how many rows a value differs from the example (0: none)
)


@pytest.fixture(scope="module")
def example() -> pd.DataFrame:
    dataset = get_config().dataset
    return pd.read_csv(PROJECT_ROOT / dataset.example_file, dtype=str, keep_default_na=False).iloc[:EXAMPLE_ROWS]


def _load(rows: pd.DataFrame, workdir, batch_id: str) -> None:
    source, staged = workdir / f"{batch_id}.csv", workdir / f"{batch_id}.parquet"
    rows.to_csv(source, index=False)
    result = ingest.validate_file(source, staged, f"landing/{batch_id}.csv")
    assert result["status"] == "passed", result
    values = {"batch_id": batch_id, "object_key": f"landing/{batch_id}.csv", "checksum": batch_id, "status": "loaded"}
    ingest.load_batch(staged, values)


def _batch(example: pd.DataFrame, spec: tuple) -> pd.DataFrame:
    start, count, shuffled, every = spec
    rows = example.iloc[start : start + count].copy()
    if every:
        changed = rows.index[::every]
        rows.loc[changed, "Temperature_C"] = (pd.to_numeric(rows.loc[changed, "Temperature_C"]) + 1).astype(str)
    return rows.sample(frac=1, random_state=count) if shuffled else rows


def _full_scan(conn, batch_id: str) -> list[str]:
    time = warehouse.quote(get_config().dataset.time_column)
    sql = f"SELECT {time} FROM observations WHERE batch_id = :b ORDER BY {time}"
    return [row[0] for row in conn.execute(sa.text(sql), {"b": batch_id})]


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=st.lists(batch_spec, min_size=1, max_size=4), on_conflict=st.sampled_from(["keep_first", "replace"]))
def test_every_read_of_a_batch_finds_exactly_its_rows(tmp_path_factory, example, monkeypatch, specs, on_conflict):
    workdir = tmp_path_factory.mktemp("span")
    name = f"AIRFLOW_CONN_{get_config().connections.warehouse.upper()}"
    connection = json.dumps({"conn_type": "sqlite", "host": str(workdir / "warehouse.db")})
    monkeypatch.setattr(ingest_load, "LOAD_CHUNK_ROWS", 17)  # several chunks per batch: the span widens
    with config_env(**{name: connection, "MLOPS__INGEST__ON_CONFLICT": on_conflict}), ingest.shared_connections():
        batch_ids = [f"b{i}" for i in range(len(specs))]
        for batch_id, spec in zip(batch_ids, specs, strict=True):
            _load(_batch(example, spec), workdir, batch_id)
        engine = warehouse.engine()
        with engine.connect() as conn:
            expected = {b: _full_scan(conn, b) for b in batch_ids}
        time_col = get_config().dataset.time_column
        held = {b: rows for b, rows in expected.items() if rows}
        assert scoring._sizes_of(batch_ids, engine) == {b: len(rows) for b, rows in held.items()}
        for batch_id, rows in expected.items():
            assert int(warehouse.read_sql("scoring/batch_rows.sql", {"batch_id": batch_id})["n"].iloc[0]) == len(rows)
            counted = warehouse.read_sql("ingest/count_batch_rows.sql", {"batch_id": batch_id}).iloc[0, 0]
            assert int(counted) == len(rows)
            profiled = batch_profile.read_batch_rows(batch_id, get_config().dataset)[time_col]
            assert sorted(profiled.dt.strftime(warehouse.TIMESTAMP_FORMAT)) == rows
            chunks = list(scoring._read_chunks(batch_id, [time_col], 7, engine))
            read = [t for chunk in chunks for t in chunk[time_col].dt.strftime(warehouse.TIMESTAMP_FORMAT)]
            assert read == rows
        if held:
            frame, sizes = scoring._read_batches(list(held), [time_col], engine)
            assert sizes == [len(rows) for rows in held.values()]
            read = list(frame[time_col].dt.strftime(warehouse.TIMESTAMP_FORMAT))
            assert read == [t for rows in held.values() for t in rows]


def _steps_to_read(engine, batch_id: str, chunk_rows: int) -> tuple[int, int]:
    """(rows, SQLite virtual machine steps in thousands) of reading a batch with _read_chunks."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0  # go on

    listener = lambda dbapi, record, proxy: dbapi.set_progress_handler(count, 1000)  # noqa: E731
    sa.event.listen(engine, "checkout", listener)
    try:
        time_col = get_config().dataset.time_column
        rows = sum(len(chunk) for chunk in scoring._read_chunks(batch_id, [time_col], chunk_rows, engine))
    finally:
        sa.event.remove(engine, "checkout", listener)
    return rows, steps[0]


def test_reading_a_batch_in_chunks_costs_what_reading_it_whole_does(tmp_path, monkeypatch):
    """Each keyset chunk starts where the previous ended, not at the batch's first row (a second
    lower bound on the time column made SQLite scan from there for every chunk: 10M rows took 40%
    longer to score)."""
    time = warehouse.quote(get_config().dataset.time_column)
    name = f"AIRFLOW_CONN_{get_config().connections.warehouse.upper()}"
    connection = json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "warehouse.db")})
    with config_env(**{name: connection}), ingest.shared_connections():
        engine = warehouse.engine()
        warehouse.ensure_schema()
        stamps = pd.date_range("2024-01-01", periods=20_000, freq="h").strftime(warehouse.TIMESTAMP_FORMAT)
        with engine.begin() as conn:
            insert = f"INSERT INTO observations ({time}, batch_id, loaded_at) VALUES (:t, 'big', :t)"
            conn.execute(sa.text(insert), [{"t": t} for t in stamps])
            ingest_load.record_batch(conn, batch_id="big", object_key="k", checksum="big", status="loaded")
            span = {"batch_id": "big", "first_time": stamps[0], "last_time": stamps[-1]}
            conn.execute(sa.text(warehouse.render_sql("ingest/widen_batch_span.sql")), span)
        whole = _steps_to_read(engine, "big", 20_000)
        chunked = _steps_to_read(engine, "big", 250)  # 80 chunks
    assert whole[0] == chunked[0] == 20_000
    assert chunked[1] < 2 * whole[1], (whole, chunked)
