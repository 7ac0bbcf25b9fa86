"""Writing batches into the warehouse: the batches row and a batch's observations, in one transaction.

load_batch loads a staged Parquet file after validation; LoadDuringValidation loads the same rows
while the file is still being validated (PostgreSQL), so the server parses and indexes on one
core while validation runs on the other. Both go through _begin_load, _load_rows and _end_load,
and a batch's rows are visible only when its one transaction commits.
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import queue
import threading
from pathlib import Path

from mlops.config import get_config
from mlops.crashpoints import crash_point


class SameContentLoaded(Exception):
    """Another batch with the same content checksum is already loaded (it won the claim)."""


def engine():
    """The warehouse engine of this process's shared connections, its schema ensured once."""
    from mlops.io import warehouse
    from mlops.io.connections import shared

    def make():
        import sqlalchemy as sa

        engine = warehouse.engine()
        for attempt in range(10):
            try:
                warehouse.ensure_schema()
                break
            except sa.exc.IntegrityError:
                # Two tasks ran CREATE TABLE IF NOT EXISTS at once on PostgreSQL (its catalog's
                # unique index reports the race); the other one created that table: go on.
                if attempt == 9:
                    raise
        return engine

    return shared("engine", make)


def _now() -> str:
    from mlops.io.warehouse import now_text

    return now_text()


def _batch_params(**values) -> dict:
    params = dict.fromkeys(
        (
            "batch_id",
            "object_key",
            "checksum",
            "raw_uri",
            "rows_in",
            "rows_kept",
            "rows_dropped",
            "status",
            "reason",
            "report_uri",
        )
    )
    params.update(values)
    params["loaded_at"] = _now()
    return params


def record_batch(connection=None, **values) -> None:
    """Insert or update the batch's row (portable upsert on batch_id)."""
    import sqlalchemy as sa

    from mlops.io import warehouse

    statement = sa.text(warehouse.render_sql("ingest/upsert_batch.sql"))
    if connection is not None:
        connection.execute(statement, _batch_params(**values))
        return
    with engine().begin() as conn:
        conn.execute(statement, _batch_params(**values))


@dataclasses.dataclass
class Loaded:
    """What load_batch did: rows this call added to observations (or took over, with
    on_conflict: replace) and the rows whose timestamp was stored with other values."""

    new_rows: int
    conflicts: dict


CONFLICT_EXAMPLES = 5


def load_batch(staged: Path, batch_values: dict) -> Loaded:
    """One transaction: the batches row and the staged observations, loaded chunk by chunk.

    new_rows is 0 for a replay whose rows are all stored already. A staged row whose timestamp
    another batch stored with other values is a conflict: counted, the first few listed, each
    recorded in observation_conflicts; ingest.on_conflict decides whether the stored row stays
    (keep_first) or takes this batch's values and id (replace).
    Raises SameContentLoaded (nothing written) when a loaded batch with the same checksum exists:
    the unique index on the checksum of loaded batches decides a race between tasks.
    """
    import pyarrow.parquet as pq

    columns = list(get_config().dataset.columns)
    with engine().begin() as conn:
        load = _begin_load(conn, batch_values)
        # pre_buffer=False: pyarrow's read-ahead cache kept the column chunks it had read
        # (the load's memory grew ~20 MB per million rows); without it, one chunk at a time.
        staged_file = pq.ParquetFile(staged, pre_buffer=False)
        for arrow_batch in staged_file.iter_batches(batch_size=LOAD_CHUNK_ROWS, columns=columns):
            _load_rows(conn, arrow_batch, load)
            del arrow_batch
        return _end_load(conn, load)


# Staged rows per bulk insert (and per conflict probe): a few MB of Arrow data at a time.
LOAD_CHUNK_ROWS = 100_000


@dataclasses.dataclass
class _OpenLoad:
    """A load in progress inside its transaction: the batch, its rows stored before, the rows'
    loaded_at, the conflicts met so far and the time span of the rows handed to it so far."""

    batch_id: str
    rows_before: int
    loaded_at: str
    conflicts: dict
    first_time: str | None = None
    last_time: str | None = None

    def widen(self, span: dict) -> None:
        """Widen the load's time span by a chunk's {"min": ..., "max": ...} (time text)."""
        if self.first_time is None or span["min"] < self.first_time:
            self.first_time = span["min"]
        if self.last_time is None or span["max"] > self.last_time:
            self.last_time = span["max"]


def _begin_load(conn, batch_values: dict) -> _OpenLoad:
    """Count the batch's stored rows (a replay finds its rows stored already: only the difference
    is new) and upsert its batches row; raises SameContentLoaded on the checksum's unique index."""
    import sqlalchemy as sa

    from mlops.io import warehouse

    batch_id = batch_values["batch_id"]
    count_rows = sa.text(warehouse.render_sql("ingest/count_batch_rows.sql"))
    rows_before = conn.execute(count_rows, {"batch_id": batch_id}).scalar_one()
    try:
        record_batch(conn, **batch_values)
    except sa.exc.IntegrityError as exc:  # the one-loaded-batch-per-checksum index
        raise SameContentLoaded(batch_values["checksum"]) from exc
    conflicts = {"count": 0, "on_conflict": get_config().ingest.on_conflict, "examples": []}
    return _OpenLoad(batch_id, rows_before, _now(), conflicts)


def _load_rows(conn, arrow_batch, load: _OpenLoad) -> None:
    """Settle one chunk's conflicts with other batches' rows, then bulk-insert it (a pyarrow
    RecordBatch or Table with the data set's columns)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from mlops.io import warehouse

    span = pc.min_max(arrow_batch.column(get_config().dataset.time_column)).as_py()
    if span["min"] is not None:  # None: no row with a time (the insert below refuses nulls)
        load.widen(span)
        _settle_conflicts(conn, arrow_batch, span, load.batch_id, load.loaded_at, load.conflicts)
    # The time column is the primary key: a row stored already (by an earlier, overlapping
    # batch) is skipped, never duplicated or overwritten.
    rows = _with_batch_columns(arrow_batch, load.batch_id, load.loaded_at)
    warehouse.bulk_insert(conn, "observations", rows, conflict_key=get_config().dataset.time_column)
    del rows
    pa.default_memory_pool().release_unused()  # mimalloc (pyarrow's default) otherwise keeps freed chunks


def _end_load(conn, load: _OpenLoad) -> Loaded:
    """Record the batch's time span, count the rows this load added; if any, mark the batch not
    announced, in the same transaction as the rows: whatever happens to this attempt from here
    on, the batch stays pending until an asset event carrying it has been emitted.

    The span (batches.first_time/last_time) is how the warehouse finds a batch's rows: a range
    of the time column's primary key, filtered by batch_id (see include/sql/schema/010_ingest.sql).
    It only ever widens, so it bounds every row that carries the batch's id."""
    import sqlalchemy as sa

    from mlops.io import warehouse

    if load.first_time is not None:
        span = {"batch_id": load.batch_id, "first_time": load.first_time, "last_time": load.last_time}
        conn.execute(sa.text(warehouse.render_sql("ingest/widen_batch_span.sql")), span)
    count_rows = sa.text(warehouse.render_sql("ingest/count_batch_rows.sql"))
    rows_after = conn.execute(count_rows, {"batch_id": load.batch_id}).scalar_one()
    if rows_after > load.rows_before:
        conn.execute(sa.text(warehouse.render_sql("ingest/unannounce_batch.sql")), {"batch_id": load.batch_id})
    return Loaded(int(rows_after - load.rows_before), load.conflicts)


def _with_batch_columns(arrow_batch, batch_id: str, loaded_at: str):
    """The staged chunk with the batch_id and loaded_at columns of the observations table."""
    import pyarrow as pa

    n = arrow_batch.num_rows
    columns = [*arrow_batch.columns, pa.repeat(batch_id, n), pa.repeat(loaded_at, n)]
    return pa.RecordBatch.from_arrays(columns, names=[*arrow_batch.schema.names, "batch_id", "loaded_at"])


def _settle_conflicts(conn, arrow_batch, span: dict, batch_id: str, loaded_at: str, conflicts: dict) -> None:
    """Find the rows of `arrow_batch` (one staged chunk, its time column's {"min", "max"} in
    `span`) whose timestamp another batch stored with other values; record each, and with
    on_conflict: replace write this batch's values over it. A chunk whose time range holds no
    other batch's row costs one indexed probe."""
    import sqlalchemy as sa

    from mlops.io import warehouse

    probe = {"lo": span["min"], "hi": span["max"], "batch_id": batch_id}
    if conn.execute(sa.text(warehouse.render_sql("ingest/overlapping_rows.sql")), probe).first() is None:
        return
    differing = _differing_rows(conn, arrow_batch.to_pandas(), batch_id)
    if differing.empty:
        return
    replace = conflicts["on_conflict"] == "replace"
    records = _conflict_records(differing, batch_id, "replaced" if replace else "kept_first")
    conflicts["count"] += len(records)
    room = CONFLICT_EXAMPLES - len(conflicts["examples"])
    conflicts["examples"] += [
        {"time": r["time"], "stored_batch_id": r["stored_batch_id"], "stored": r["stored"], "new": r["new"]}
        for r in records[: max(room, 0)]
    ]
    conn.execute(
        sa.text(warehouse.render_sql("ingest/insert_conflict.sql")),
        [{k: v for k, v in r.items() if k not in ("stored", "new")} for r in records],
    )
    if replace:
        columns = list(get_config().dataset.columns)
        updates = [
            {
                **{f"v{i}": r["new"][c] for i, c in enumerate(columns)},
                "time": r["time"],
                "batch_id": batch_id,
                "loaded_at": loaded_at,
            }
            for r in records
        ]
        conn.execute(sa.text(warehouse.render_sql("ingest/replace_observation.sql")), updates)


def _differing_rows(conn, frame, batch_id: str):
    """The rows of `frame` joined to the stored row of another batch at the same timestamp,
    kept only where some column differs (null equals null). Stored columns end in '__stored'."""
    import pandas as pd
    import sqlalchemy as sa

    from mlops.io import warehouse

    dataset = get_config().dataset
    query = sa.text(warehouse.render_sql("ingest/stored_rows.sql")).bindparams(sa.bindparam("times", expanding=True))
    times = frame[dataset.time_column].dropna().tolist()
    parts = [
        pd.DataFrame(conn.execute(query, {"times": times[i : i + 1000], "batch_id": batch_id}).mappings().all())
        for i in range(0, len(times), 1000)
    ]
    stored = pd.concat([p for p in parts if not p.empty]) if any(not p.empty for p in parts) else pd.DataFrame()
    if stored.empty:
        return stored
    merged = frame.merge(stored, on=dataset.time_column, suffixes=("", "__stored"))
    differs = pd.Series(False, index=merged.index)
    for name, spec in dataset.columns.items():
        if name == dataset.time_column:
            continue
        ours, theirs = merged[name], merged[f"{name}__stored"]
        if spec.type in ("float", "int"):
            ours, theirs = pd.to_numeric(ours).astype("float64"), pd.to_numeric(theirs).astype("float64")
        else:
            ours, theirs = ours.astype("string"), theirs.astype("string")
        both_missing = ours.isna() & theirs.isna()
        differs |= ~both_missing & ~(ours == theirs).fillna(False).astype(bool)
    return merged[differs.to_numpy()]


def _conflict_records(differing, batch_id: str, action: str) -> list[dict]:
    """observation_conflicts rows (values as JSON objects, nulls as null) of the differing rows."""
    dataset = get_config().dataset
    recorded_at = _now()
    records = []
    for row in differing.to_dict("records"):
        new = {c: _plain(row[c]) for c in dataset.columns}
        stored = {c: _plain(row[c] if c == dataset.time_column else row[f"{c}__stored"]) for c in dataset.columns}
        records.append(
            {
                "batch_id": batch_id,
                "time": new[dataset.time_column],
                "stored_batch_id": row["batch_id"],
                "stored_values": json.dumps(stored),
                "new_values": json.dumps(new),
                "action": action,
                "recorded_at": recorded_at,
                "stored": stored,
                "new": new,
            }
        )
    return records


def _plain(value):
    """A pandas/numpy scalar as a JSON-able Python value (missing -> None)."""
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


# ---------------------------------------------------------------- the load beside validation


def load_during_validation_applies() -> bool:
    """True when ingest.load_during_validation is on and the warehouse is PostgreSQL (SQLite
    takes one writer at a time and writes in this process: loading beside validation would hold
    its write lock longer and gain nothing)."""
    return get_config().ingest.load_during_validation and engine().dialect.name == "postgresql"


class LoadDuringValidation:
    """A batch's load that runs while its file is validated: a chunk sink for validate_file.

    A thread opens the load's transaction (the batches row claims the checksum first, as in
    load_batch) and loads each staged chunk validate_file hands to write(), while validation
    goes on with the next chunk. Nothing is visible before finish() commits, after validation
    has passed; a kill at any point rolls the transaction back with the connection.

    The load is abandoned (rolled back) when validation calls discard(): rows already written
    would leave again (timestamps with conflicting values in the file, a second pass over a
    file whose chunks overlap in time); validation then stages the rows to its file, which the
    caller loads with load_batch. At most one chunk waits in the queue, so memory stays flat
    whatever the file's size.
    """

    _END = object()

    def __init__(self, batch_values: dict):
        """batch_values: the batches row to claim (its counts are set again by finish())."""
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._conn = self._transaction = self._load = None
        self._error: BaseException | None = None
        self.discarded = False
        self._ended = False
        run = contextvars.copy_context().run
        self._thread = threading.Thread(target=run, args=(self._consume, batch_values), daemon=True)
        self._thread.start()

    def write(self, table) -> None:
        """Queue one staged chunk (a pyarrow Table with at least the data set's columns); blocks
        while the previous chunk waits."""
        if not self.discarded:
            self._queue.put(table)

    def discard(self) -> None:
        """What was written will not be the batch's rows: the load is rolled back at the end."""
        self.discarded = True

    def _consume(self, batch_values: dict) -> None:
        """The thread: open the transaction, then load each queued chunk until the end marker;
        after an error or discard(), only drain the queue (write() must never block for good)."""
        columns = list(get_config().dataset.columns)
        try:
            self._conn = engine().connect()
            self._transaction = self._conn.begin()
            self._load = _begin_load(self._conn, batch_values)
        except BaseException as exc:  # noqa: BLE001 - handed to finish()
            self._error = exc
        while (table := self._queue.get()) is not self._END:
            if self._error is not None or self.discarded:
                continue
            try:
                for arrow_batch in table.select(columns).combine_chunks().to_batches(LOAD_CHUNK_ROWS):
                    _load_rows(self._conn, arrow_batch, self._load)
                crash_point("ingest_chunk_loaded")
            except BaseException as exc:  # noqa: BLE001 - handed to finish()
                self._error = exc

    def _join(self) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put(self._END)
        self._thread.join()

    def finish(self, batch_values: dict) -> Loaded | None:
        """After validation passed: record the batch's final row, count the new rows, commit;
        what load_batch returns. None (rolled back) when the load was discarded. An error the
        thread met is raised after the rollback (SameContentLoaded as load_batch raises it)."""
        self._join()
        if self._error is not None or self.discarded:
            self.abandon()
            if self._error is not None:
                raise self._error
            return None
        record_batch(self._conn, **batch_values)
        loaded = _end_load(self._conn, self._load)
        crash_point("ingest_before_commit")
        self._transaction.commit()
        self._conn.close()
        self._conn = None
        return loaded

    def abandon(self) -> None:
        """Roll back and close (idempotent): nothing written by this load stays."""
        self._join()
        if self._conn is not None:
            self._conn.close()  # rolls back the open transaction
            self._conn = None
