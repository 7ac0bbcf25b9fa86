"""warehouse.ensure_schema migrates an older SQLite warehouse in place, exactly once."""

from __future__ import annotations

import json

import sqlalchemy as sa

from example_warehouse import WAREHOUSE_CONN_ENV
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
