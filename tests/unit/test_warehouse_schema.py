"""warehouse.ensure_schema migrates an older SQLite warehouse in place, exactly once."""

from __future__ import annotations

import json

import sqlalchemy as sa

from example_warehouse import WAREHOUSE_CONN_ENV
from mlops.config import get_config
from mlops.io import warehouse

OLD_BATCHES = """CREATE TABLE batches (batch_id TEXT PRIMARY KEY, object_key TEXT NOT NULL, checksum TEXT NOT NULL,
raw_uri TEXT, rows_in INTEGER, rows_kept INTEGER, rows_dropped INTEGER, status TEXT NOT NULL, reason TEXT,
report_uri TEXT, loaded_at TEXT NOT NULL)"""


def test_announced_at_is_added_to_an_old_warehouse_and_backfilled_once(tmp_path, monkeypatch):
    monkeypatch.setenv(WAREHOUSE_CONN_ENV, json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "old.db")}))
    with warehouse.engine().begin() as conn:
        conn.execute(sa.text(OLD_BATCHES))
        for batch_id, status in (("a", "loaded"), ("q", "quarantined")):
            conn.execute(
                sa.text(
                    "INSERT INTO batches (batch_id, object_key, checksum, status, loaded_at) VALUES (:b, 'k', :b, :s, 't0')"
                ),
                {"b": batch_id, "s": status},
            )
    warehouse.ensure_schema()
    read = "SELECT batch_id, announced_at FROM batches ORDER BY batch_id"
    with warehouse.engine().connect() as conn:
        # Loaded before the column existed: announced by the run that loaded it.
        assert [tuple(r) for r in conn.execute(sa.text(read))] == [("a", "t0"), ("q", None)]
    with warehouse.engine().begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO batches (batch_id, object_key, checksum, status, loaded_at) VALUES ('n', 'k', 'n', 'loaded', 't1')"
            )
        )
    warehouse.ensure_schema()  # the backfill does not run again: the new batch stays pending
    with warehouse.engine().connect() as conn:
        assert [tuple(r) for r in conn.execute(sa.text(read))] == [("a", "t0"), ("n", None), ("q", None)]


def test_an_old_warehouse_gets_its_batch_spans_from_its_rows_and_loses_the_batch_index(tmp_path, monkeypatch):
    monkeypatch.setenv(WAREHOUSE_CONN_ENV, json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "old.db")}))
    time = warehouse.quote(get_config().dataset.time_column)
    with warehouse.engine().begin() as conn:
        conn.execute(sa.text(OLD_BATCHES))
        conn.execute(sa.text(f"CREATE TABLE observations ({time} TEXT PRIMARY KEY, batch_id TEXT, loaded_at TEXT)"))
        conn.execute(sa.text(f"CREATE INDEX observations_batch_time ON observations (batch_id, {time})"))
        for batch_id in ("a", "b", "q"):
            conn.execute(
                sa.text(
                    "INSERT INTO batches (batch_id, object_key, checksum, status, loaded_at) VALUES (:b, 'k', :b, 'loaded', 't0')"
                ),
                {"b": batch_id},
            )
        rows = [("2024-01-01 00:00:00", "a"), ("2024-01-03 00:00:00", "b"), ("2024-01-02 00:00:00", "a")]
        for stamp, batch_id in rows:
            conn.execute(
                sa.text(f"INSERT INTO observations ({time}, batch_id, loaded_at) VALUES (:t, :b, 't0')"),
                {"t": stamp, "b": batch_id},
            )
    warehouse.ensure_schema()
    spans = "SELECT batch_id, first_time, last_time FROM batches ORDER BY batch_id"
    expected = [
        ("a", "2024-01-01 00:00:00", "2024-01-02 00:00:00"),
        ("b", "2024-01-03 00:00:00", "2024-01-03 00:00:00"),
        ("q", None, None),  # no rows: no span
    ]
    with warehouse.engine().connect() as conn:
        assert [tuple(r) for r in conn.execute(sa.text(spans))] == expected
        indexes = {r[0] for r in conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'index'"))}
    assert "observations_batch_time" not in indexes
    warehouse.ensure_schema()  # again: nothing to migrate, nothing fails
    with warehouse.engine().connect() as conn:
        assert [tuple(r) for r in conn.execute(sa.text(spans))] == expected
        assert warehouse.read_sql("ingest/count_batch_rows.sql", {"batch_id": "a"}).iloc[0, 0] == 2
