"""Ingest one object from the landing area: raw copy, validation, then load or quarantine.

The path of a file (all keys under config.storage.bucket):

1. ``landing/<name>`` is streamed to a local temporary file while its SHA-256 and MD5 are
   computed. The batch id is ``sha256(key + "\\n" + content sha256)[:16]``: the same file
   dropped twice has the same id and is not loaded twice (the ``batches`` table says so).
2. It is copied to the immutable ``raw/<batch_id>/<safe name>`` and the copy is verified
   (size and MD5 against what was read). The landing object is removed only at the very end,
   after the batch's final status is committed: if anything dies on the way, the file is still
   in landing and the next run finishes the job (every step is idempotent).
3. The file is read in chunks (never whole), parsed to the configured types and validated with
   the Great Expectations suite (see mlops.ingest.validation for the row policy). Kept rows are staged
   to a local Parquet file.
4. A good batch is loaded in ONE transaction: its ``batches`` row and its observations
   (``INSERT ... ON CONFLICT DO NOTHING`` on the time column: an overlapping later batch adds no
   duplicates). A bad batch goes to ``quarantine/<batch_id>/`` with the raw file, the validation
   result (JSON) and an HTML report; its ``batches`` row says why; nothing of it is loaded.

Keys are only ever used as S3 keys; names derived from them are sanitised, so spaces, unicode
or ``..`` in a key cannot escape the batch's folder.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import gzip
import hashlib
import json
import logging
import re
import tempfile
import time
import unicodedata
import zlib
from pathlib import Path

from mlops.config import get_config
from mlops.io.connections import shared_connections

log = logging.getLogger(__name__)

READ_BLOCK = 1024 * 1024
FINAL_STATUSES = ("loaded", "quarantined", "duplicate")


class BadBatch(Exception):
    """The file cannot be loaded: quarantined. The message names file, column and rule."""

    def __init__(self, message: str, result: dict):
        super().__init__(message)
        self.result = result


class SameContentLoaded(Exception):
    """Another batch with the same content checksum is already loaded (it won the claim)."""


class StructuralError(Exception):
    """The file's structure is wrong (encoding, delimiter, columns, compression, no rows)."""


# ---------------------------------------------------------------- keys and ids


def safe_name(key: str, max_length: int = 120) -> str:
    """A file name derived from an object key that is safe in any path: ASCII, no '..' or '/'."""
    name = key.rstrip("/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
    name = re.sub(r"\.{2,}", ".", name).strip("._")
    return (name or "file")[-max_length:]


def batch_id_for(key: str, content_sha256: str) -> str:
    """The batch id of a landing object: its key and its content, hashed."""
    return hashlib.sha256(f"{key}\n{content_sha256}".encode()).hexdigest()[:16]


def batch_id_of_content(key: str, content: bytes) -> str:
    """batch_id_for() computed from the bytes themselves (for clients that uploaded the file)."""
    return batch_id_for(key, hashlib.sha256(content).hexdigest())


def _uri(key: str) -> str:
    from mlops.io import objectstore

    return objectstore.uri(key)


# ---------------------------------------------------------------- object store


def _client():
    from mlops.io import objectstore

    return objectstore.client()


def _engine():
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


def _read(name: str, params: dict):
    import pandas as pd
    import sqlalchemy as sa

    from mlops.io import warehouse

    with _engine().connect() as conn:
        return pd.read_sql_query(sa.text(warehouse.render_sql(name)), conn, params=params)


def not_ingestible(key: str, size: int) -> str | None:
    """Why a landing object is not a file to ingest, or None if it is: the one predicate the
    sensor and the listing share. Folder markers, zero-length placeholders and keys without
    one of ingest.suffixes are left alone (and reported by the listing)."""
    if key.endswith("/"):
        return "folder marker"
    if not key.lower().endswith(tuple(get_config().ingest.suffixes)):
        return f"suffix not in ingest.suffixes {list(get_config().ingest.suffixes)}"
    if size == 0:
        return "zero-length object (a placeholder?)"
    return None


def sensor_pattern() -> str:
    """The sensor trigger's wildcard: landing keys that may be files to ingest (a superset of
    not_ingestible(...) is None, so folder markers and other suffixes never wake it)."""
    import os.path

    common = os.path.commonprefix([s.lower() for s in get_config().ingest.suffixes])
    return (
        f"{get_config().storage.landing_prefix}*{common}*" if common else f"{get_config().storage.landing_prefix}*[!/]"
    )


def landing_keys(limit: int | None = None, report_ignored: bool = True) -> list[str]:
    """Files waiting under the landing prefix, oldest first (see not_ingestible)."""
    storage = get_config().storage
    paginator = _client().get_paginator("list_objects_v2")
    found, ignored = [], []
    for page in paginator.paginate(Bucket=storage.bucket, Prefix=storage.landing_prefix):
        for obj in page.get("Contents", []):
            why = not_ingestible(obj["Key"], obj.get("Size", 0))
            if why is None:
                found.append((obj["LastModified"], obj["Key"]))
            else:
                ignored.append(f"{obj['Key']} ({why})")
    if ignored and report_ignored:
        log.warning("%d landing object(s) are not files to ingest and stay: %s", len(ignored), bounded(ignored))
    keys = [key for _, key in sorted(found)]
    return keys[:limit] if limit else keys


def task_label(key: str, suffix: str = "", limit: int = 200) -> str:
    """A mapped task's label from an object key: at most `limit` characters (Airflow keeps 250),
    the start and the end of a long key with an ellipsis between."""
    room = limit - len(suffix)
    if len(key) > room:
        half = (room - 1) // 2
        key = key[:half] + "…" + key[len(key) - (room - 1 - half) :]
    return key + suffix


def spread(keys: list[str], groups: int) -> list[list[str]]:
    """Keys dealt round-robin into at most `groups` non-empty lists (oldest keys first in each)."""
    count = min(len(keys), groups)
    return [keys[i::count] for i in range(count)]


def process_objects(keys: list[str]) -> dict:
    """Process several objects one after the other; every one is tried even if some are bad.

    Returns {"processed": [...summaries], "new_rows": n, "failed": [messages]}.
    """
    done, failed, new_rows = [], [], 0
    for key in keys:
        try:
            summary = process_object(key)
        except BadBatch as exc:
            failed.append(str(exc))
            continue
        done.append(summary)
        new_rows += summary.get("new_rows") or 0
    return {"processed": done, "new_rows": new_rows, "failed": failed}


def object_exists(key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        _client().head_object(Bucket=get_config().storage.bucket, Key=key)
        return True
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


@dataclasses.dataclass
class Download:
    path: Path
    size: int
    sha256: str
    md5: str
    etag: str = ""


def download(key: str, directory: Path) -> Download:
    """Stream an object to a local file, hashing as it goes (memory stays at one block)."""
    response = _client().get_object(Bucket=get_config().storage.bucket, Key=key)
    body = response["Body"]
    sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    path = directory / "object"
    with open(path, "wb") as out:
        for block in body.iter_chunks(READ_BLOCK):
            sha.update(block)
            md5.update(block)
            size += len(block)
            out.write(block)
    return Download(path=path, size=size, sha256=sha.hexdigest(), md5=md5.hexdigest(), etag=response["ETag"])


def put_verified(local: Download, key: str) -> None:
    """Upload a local file and check that the stored object has the same size and MD5.

    An existing object at `key` with the right size and MD5 is kept as is (raw is immutable;
    a rerun finds the copy already made).
    """
    from botocore.exceptions import ClientError

    client, bucket = _client(), get_config().storage.bucket
    with contextlib.suppress(ClientError):
        head = client.head_object(Bucket=bucket, Key=key)
        if head["ContentLength"] == local.size and head["ETag"].strip('"') == local.md5:
            return
    with open(local.path, "rb") as body:
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentMD5=base64.b64encode(bytes.fromhex(local.md5)).decode(),
            Metadata={"sha256": local.sha256},
        )
    head = client.head_object(Bucket=bucket, Key=key)
    if head["ContentLength"] != local.size or head["ETag"].strip('"') != local.md5:
        # Raised as a plain error: the task is retried, the landing object is still there.
        raise OSError(
            f"copy to {_uri(key)} not verified: size {head['ContentLength']} vs {local.size}, "
            f"etag {head['ETag']} vs md5 {local.md5}"
        )


def put_json(key: str, payload: dict) -> None:
    from mlops.io import objectstore

    objectstore.put_json(key, payload)


def put_text(key: str, text: str, content_type: str) -> None:
    from mlops.io import objectstore

    objectstore.put_text(key, text, content_type)


def delete_object(key: str) -> None:
    from mlops.io import objectstore

    objectstore.delete(key)


def delete_if_unchanged(key: str, etag: str) -> bool:
    """Remove a landing object only if it is still the version that was read (same ETag).

    A producer may overwrite the key while its first version is validated: the newer version
    must stay in landing (the next run makes it its own batch). The request carries the S3
    conditional `If-Match`, which SeaweedFS honours (412, the newer version stays: tested in
    test_the_object_store_refuses_a_delete_with_a_stale_etag); the object is also read back
    (HEAD) right before, for stores that ignore If-Match on DELETE: there a version written
    between that HEAD and the DELETE, a window of one round trip, would be lost.
    Returns whether the object was removed.
    """
    from botocore.exceptions import ClientError

    client, bucket = _client(), get_config().storage.bucket
    try:
        current = client.head_object(Bucket=bucket, Key=key)["ETag"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    if current != etag:
        log.warning("%s: a newer version landed while it was processed (etag %s, read %s): kept", key, current, etag)
        return False
    try:
        client.delete_object(Bucket=bucket, Key=key, IfMatch=etag)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
            log.warning("%s: a newer version landed while it was processed: kept", key)
            return False
        raise
    return True


# ---------------------------------------------------------------- warehouse


def _now() -> str:
    from mlops.io.warehouse import now_text

    return now_text()


def get_batch(batch_id: str) -> dict | None:
    frame = _read("ingest/batch_by_id.sql", {"batch_id": batch_id})
    return None if frame.empty else _record(frame.iloc[0].to_dict())


def loaded_batch_with_checksum(checksum: str) -> dict | None:
    frame = _read("ingest/batch_by_checksum.sql", {"checksum": checksum})
    return None if frame.empty else _record(frame.iloc[0].to_dict())


def batches_for_key(object_key: str) -> list[dict]:
    """Every batch recorded for an object key, newest first (the demo and tests read this)."""
    frame = _read("ingest/batches_by_key.sql", {"object_key": object_key})
    return [_record(r) for r in frame.to_dict("records")]


def _record(row: dict) -> dict:
    return {k: (None if v != v else v) if isinstance(v, float) else v for k, v in row.items()}  # NaN -> None


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
    with _engine().begin() as conn:
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
    import pyarrow as pa
    import pyarrow.parquet as pq
    import sqlalchemy as sa

    from mlops.io import warehouse

    columns = list(get_config().dataset.columns)
    (insert,) = warehouse.split_statements(warehouse.render_sql("ingest/insert_observations.sql"))
    loaded_at = _now()
    batch_id = batch_values["batch_id"]
    conflicts = {"count": 0, "on_conflict": get_config().ingest.on_conflict, "examples": []}
    count_rows = sa.text(warehouse.render_sql("ingest/count_batch_rows.sql"))
    with _engine().begin() as conn:
        # A replay of a loaded batch finds its rows stored already: only the difference is new.
        rows_before = conn.execute(count_rows, {"batch_id": batch_id}).scalar_one()
        try:
            record_batch(conn, **batch_values)
        except sa.exc.IntegrityError as exc:  # the one-loaded-batch-per-checksum index
            raise SameContentLoaded(batch_values["checksum"]) from exc
        dbapi = conn.connection.driver_connection
        cursor = dbapi.cursor()
        try:
            # pre_buffer=False: pyarrow's read-ahead cache kept the column chunks it had read
            # (the load's memory grew ~20 MB per million rows); without it, one chunk at a time.
            staged_file, pool = pq.ParquetFile(staged, pre_buffer=False), pa.default_memory_pool()
            for arrow_batch in staged_file.iter_batches(batch_size=50_000, columns=columns):
                frame = arrow_batch.to_pandas()
                _settle_conflicts(conn, frame, batch_id, loaded_at, conflicts)
                warehouse.insert_many(cursor, insert, _rows_for_insert(frame, columns, batch_id, loaded_at))
                del frame, arrow_batch
                pool.release_unused()  # mimalloc (pyarrow's default) otherwise keeps freed chunks
        finally:
            cursor.close()
        rows_after = conn.execute(count_rows, {"batch_id": batch_id}).scalar_one()
        if rows_after > rows_before:
            # In the same transaction as the rows: whatever happens to this attempt from here on,
            # the batch stays pending until an asset event carrying it has been emitted.
            conn.execute(sa.text(warehouse.render_sql("ingest/unannounce_batch.sql")), {"batch_id": batch_id})
    return Loaded(int(rows_after - rows_before), conflicts)


def _settle_conflicts(conn, frame, batch_id: str, loaded_at: str, conflicts: dict) -> None:
    """Find the rows of `frame` (one staged chunk) whose timestamp another batch stored with
    other values; record each, and with on_conflict: replace write this batch's values over it.
    A chunk whose time range holds no other batch's row costs one indexed probe."""
    import sqlalchemy as sa

    from mlops.io import warehouse

    time_col = get_config().dataset.time_column
    times = frame[time_col].dropna()
    if times.empty:
        return
    probe = {"lo": times.min(), "hi": times.max(), "batch_id": batch_id}
    if conn.execute(sa.text(warehouse.render_sql("ingest/overlapping_rows.sql")), probe).first() is None:
        return
    differing = _differing_rows(conn, frame, batch_id)
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


def unannounced_batches() -> dict[str, int]:
    """Loaded batches no observations asset event has carried yet: {batch_id: rows it holds in
    observations}, oldest load first. A batch loaded by an attempt that died before the event
    is here until a later announce_observations emits it and mark_announced() records that."""
    frame = _read("ingest/unannounced_batches.sql", {})
    return {str(r["batch_id"]): int(r["stored_rows"]) for r in frame.to_dict("records")}


def mark_announced(batch_ids: list[str]) -> None:
    """Record that an observations asset event carrying these batches has been emitted.

    Called only after the event exists (by the task after announce_observations: Airflow
    registers a task's outlet events when it records the task's success), so a crash in
    between announces a batch twice, never zero times."""
    import sqlalchemy as sa

    from mlops.io import warehouse

    statement = sa.text(warehouse.render_sql("ingest/mark_announced.sql"))
    with _engine().begin() as conn:
        for batch_id in batch_ids:
            conn.execute(statement, {"batch_id": batch_id, "announced_at": _now()})


def _rows_for_insert(frame, columns: list[str], batch_id: str, loaded_at: str) -> list[tuple]:
    import numpy as np

    data = []
    for name in columns:
        values = frame[name].to_numpy(dtype=object, na_value=None)
        data.append(values)
    n = len(frame)
    data.append(np.full(n, batch_id, dtype=object))
    data.append(np.full(n, loaded_at, dtype=object))
    return list(zip(*data, strict=True))


# ---------------------------------------------------------------- parsing and validating


def _compression(path: Path) -> str | None:
    """gzip by content (magic bytes), whatever the key's extension says."""
    with open(path, "rb") as probe:
        magic = probe.read(2)
    return "gzip" if magic == b"\x1f\x8b" else None


def _coerce(chunk, dataset, parse_errors: dict, row_faults: dict, plausible: tuple):
    """Parse each configured column to its type. Unparseable values become null and are counted.
    Time faults (ambiguous or non-existent local time, implausible time) are added to
    `row_faults` as {rule: {"count", "examples", "mask"}} (the mask is this chunk's).

    Returns (typed chunk, unparseable-row mask, the time column as warehouse text).
    """
    import pandas as pd

    unparseable = pd.Series(False, index=chunk.index)
    time_text = None
    for name, spec in dataset.columns.items():
        if name not in chunk.columns:
            continue
        raw = chunk[name]
        if spec.type in ("float", "int"):
            if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
                typed = raw.astype("float64")
            else:
                text = raw.astype("string").str.strip()
                typed = pd.to_numeric(text, errors="coerce").astype("float64")
            bad = raw.notna() & typed.isna()
            if spec.type == "int":
                fractional = typed.notna() & (typed % 1 != 0)
                bad |= fractional
                typed = typed.mask(fractional)
        elif spec.type == "datetime":
            text = raw.astype("string")
            parsed, zone_fault, converted = _parse_time(text, dataset)
            bad = raw.notna() & parsed.isna() & ~zone_fault
            _note_fault(row_faults, ZONE_RULE, zone_fault, raw)
            typed = parsed
            if name == dataset.time_column:
                too_late, too_early = _implausible(parsed, plausible)
                _note_fault(row_faults, FUTURE_RULE, too_late, raw)
                _note_fault(row_faults, EARLY_RULE, too_early, raw)
                time_text = _timestamp_text(text, parsed, dataset.time_format, reuse_text=not converted)
        else:
            typed = raw.astype("string")  # read as str: kept verbatim ('02980' stays '02980')
            bad = pd.Series(False, index=chunk.index)
        if bad.any():
            entry = parse_errors.setdefault(name, {"column": name, "type": spec.type, "count": 0, "examples": []})
            entry["count"] += int(bad.sum())
            for value in raw[bad].astype(str).unique()[:10]:
                if len(entry["examples"]) < 10 and value not in entry["examples"]:
                    entry["examples"].append(value)
            unparseable |= bad
        chunk[name] = typed
    return chunk, unparseable, time_text


FIELD_COUNT_RULE = "field count differs from the header"
ZONE_RULE = "local time ambiguous or non-existent (daylight saving)"
FUTURE_RULE = "timestamp later than ingest time + validation.future_tolerance_hours"
EARLY_RULE = "timestamp earlier than validation.earliest_timestamp"


def _note_fault(row_faults: dict, rule: str, mask, raw) -> None:
    """Add a chunk's rows breaking `rule` (a boolean Series) to `row_faults`."""
    entry = row_faults.setdefault(rule, {"count": 0, "examples": [], "mask": None})
    entry["mask"] = mask if entry["mask"] is None else entry["mask"] | mask
    if not mask.any():
        return
    entry["count"] += int(mask.sum())
    for value in raw[mask].astype(str).unique()[:EXAMPLE_VALUES]:
        if len(entry["examples"]) < EXAMPLE_VALUES and value not in entry["examples"]:
            entry["examples"].append(value)


EXAMPLE_VALUES = 10


def _parse_time(text, dataset):
    """Times as naive UTC datetimes: (parsed, zone-fault mask, converted?).

    A format with %z honours each row's offset (rows with different offsets are fine: each is
    converted). Naive times are in dataset.time_zone; with a zone other than UTC they are
    localised with its daylight-saving rules, and a local time that is ambiguous (the repeated
    hour) or non-existent (the skipped hour) is a zone fault, not a guess.
    """
    import pandas as pd

    no_fault = pd.Series(False, index=text.index)
    if "%z" in dataset.time_format or "%Z" in dataset.time_format:
        parsed = pd.to_datetime(text, format=dataset.time_format, errors="coerce", utc=True)
        return parsed.dt.tz_localize(None), no_fault, True
    parsed = pd.to_datetime(text, format=dataset.time_format, errors="coerce")
    if dataset.time_zone == "UTC":
        return parsed, no_fault, False
    local = parsed.dt.tz_localize(dataset.time_zone, ambiguous="NaT", nonexistent="NaT")
    fault = parsed.notna() & local.isna()
    return local.dt.tz_convert("UTC").dt.tz_localize(None), fault, True


def plausible_range(validation) -> tuple:
    """(earliest, latest) plausible naive-UTC timestamps at this moment (earliest may be None)."""
    import pandas as pd

    latest = pd.Timestamp.now(tz="UTC").tz_localize(None) + pd.Timedelta(hours=validation.future_tolerance_hours)
    earliest = pd.Timestamp(validation.earliest_timestamp) if validation.earliest_timestamp else None
    return earliest, latest


def _implausible(parsed, plausible: tuple):
    earliest, latest = plausible
    too_late = parsed.notna() & (parsed > latest)
    too_early = parsed.notna() & (parsed < earliest) if earliest is not None else parsed.notna() & False
    return too_late, too_early


def _timestamp_text(text, parsed, time_format: str, reuse_text: bool = True):
    """Timestamps as warehouse text. Strings that parsed with the warehouse format and have its
    length (19) are already canonical and are reused: formatting a million dates costs a second."""
    from mlops.io.warehouse import TIMESTAMP_FORMAT

    out = text.copy()
    redo = parsed.notna()
    if time_format == TIMESTAMP_FORMAT and reuse_text:
        redo &= text.str.len() != len("2000-01-01 00:00:00")
    if redo.any():
        out[redo] = parsed[redo].dt.strftime(TIMESTAMP_FORMAT)
    out[parsed.isna()] = None
    return out.astype("string")


def _stage_frame(frame, dataset):
    """The kept rows in warehouse shape: timestamp text, floats, nullable ints, strings."""
    out = frame[list(dataset.columns)].copy()
    for name, spec in dataset.columns.items():
        if spec.type == "datetime":
            out[name] = frame[f"__text__{name}"]
        elif spec.type == "int":
            out[name] = out[name].astype("Int64")
        elif spec.type == "float":
            out[name] = out[name].astype("float64")
        else:
            out[name] = out[name].astype("string")
    return out


def validate_file(path: Path, staged: Path, object_key: str, timings: dict | None = None) -> dict:
    """Read, parse and validate a local copy of an object; stage kept rows as Parquet.

    Returns the validation result (JSON-able). result["status"] is "passed" or "quarantined".
    `timings` (if given) receives seconds spent parsing (CSV + types), validating (GX, row rules,
    duplicates) and staging (Parquet).
    """
    timings = timings if timings is not None else {}
    for phase in ("parse", "validate", "stage"):
        timings.setdefault(phase, 0.0)
    try:
        return _validate_pass(path, staged, object_key, timings, rows_across_chunks=False)
    except _ChunksOverlapInTime:
        # Rows of an earlier chunk may repeat in this one; that needs every row's hash, from the start.
        log.info("%s: chunks overlap in time; validating again with every row's hash", object_key)
        staged.unlink(missing_ok=True)
        return _validate_pass(path, staged, object_key, timings, rows_across_chunks=True)


class _ChunksOverlapInTime(Exception):
    pass


def _validate_pass(path: Path, staged: Path, object_key: str, timings: dict, rows_across_chunks: bool) -> dict:
    """One pass of validate_file. A file in time order (or in reverse order) has no timestamp in
    two chunks, so duplicates are looked for only within each chunk. The first chunk that
    overlaps an earlier one in time raises _ChunksOverlapInTime unless `rows_across_chunks`,
    which keeps every row's timestamp and hash to compare later chunks with (16 bytes a row).
    """
    return _ChunkValidator(path, staged, object_key, timings, rows_across_chunks).run()


class _ChunkValidator:
    """The state one pass of validate_file shares across chunks, and one method per phase.

    Per chunk: read and parse (_coerce), exact duplicates (_dedupe), every rule's mask and the
    GX sample (_flag), set_null then the drop rules (_apply_rules), Parquet staging (_stage).
    After the last chunk: GX on the sample, timestamps with conflicting values, the verdict.
    """

    def __init__(self, path: Path, staged: Path, object_key: str, timings: dict, rows_across_chunks: bool):
        import numpy as np

        from mlops.ingest import validation

        cfg = get_config()
        self.path, self.staged, self.timings = path, staged, timings
        self.rows_across_chunks = rows_across_chunks
        self.dataset, self.policy = cfg.dataset, cfg.validation
        suite_file = validation.suite_path(self.policy)
        suite = validation.load_suite(suite_file)
        self.runner = validation.runner_for(str(suite_file))
        self.rules = validation.row_rules(suite)
        self.result = _empty_result(object_key, suite["name"], self.policy)
        self.totals: dict[str, dict] = {}
        self.parse_errors: dict[str, dict] = {}
        self.row_faults: dict[str, dict] = {}
        self.dropped: dict[str, int] = {}
        self.nulled: dict[str, int] = {}
        # Without rows_across_chunks: each earlier chunk's first and last timestamp (int64 ns).
        self.time_ranges: list[tuple] = []
        # With rows_across_chunks: each earlier chunk's sorted timestamps and their rows' hashes.
        self.seen: list[tuple] = []
        self.policy_counts: dict[str, int] = {}
        self.gx_rows: list = []
        self.gx_budget = {
            "flagged": GX_MAX_FLAGGED_ROWS,
            "clean": GX_CLEAN_SAMPLE_ROWS,
            "rng": np.random.default_rng(0),
        }
        self.conflicting_ts: set[int] = set()
        self.writer = None
        self.staged_rows = 0
        self.shape = self.reader = None

    def run(self) -> dict:
        """Validate every chunk, stage the kept rows; the validation result with its verdict."""
        self._open()
        try:
            self._read_chunks()
        finally:
            if self.writer is not None:
                self.writer.close()
        self._finish()
        return _decide(self.result, self.policy)

    def _drop(self, mask, rule: str) -> None:
        count = int(mask.sum())
        if count:
            self.dropped[rule] = self.dropped.get(rule, 0) + count

    def _guarded(self, step):
        """Run a read step; bad input becomes a structural error (and None), other errors propagate."""
        try:
            return step()
        except StopIteration:
            return None
        except Exception as exc:
            problem = _structural_problem(exc)
            if problem is None:
                raise
        self.result["structural_errors"].append(problem)
        return None

    def _open(self) -> None:
        """Check the file's shape (field counts), open the chunked reader, count bad-shape rows."""
        import numpy as np

        from mlops.ingest import csv_shape

        t0 = time.perf_counter()
        self.shape = self._guarded(
            lambda: csv_shape.check_shape(self.path, _compression(self.path), self.staged.parent)
        )
        self.timings["shape"] = self.timings.get("shape", 0.0) + time.perf_counter() - t0
        self.reader = _open_reader(self.path, self.shape, self.dataset, self.policy, self.result, self._guarded)
        shape = self.shape
        if shape is not None and shape.bad_count:
            self.row_faults[FIELD_COUNT_RULE] = {"count": shape.bad_count, "examples": shape.examples, "mask": None}
            self.result["rows_in"] += shape.bad_count
            self._drop(np.ones(shape.bad_count, dtype=bool), FIELD_COUNT_RULE)
        self.plausible = plausible_range(self.policy)

    def _read_chunks(self) -> None:
        chunks = iter(self.reader) if self.reader is not None else iter(())
        while True:
            t0 = time.perf_counter()
            chunk = self._guarded(lambda: next(chunks))
            if chunk is None:
                self.timings["parse"] += time.perf_counter() - t0
                return
            self.result["rows_in"] += len(chunk)
            chunk, unparseable, time_text = _coerce(
                chunk, self.dataset, self.parse_errors, self.row_faults, self.plausible
            )
            self.timings["parse"] += time.perf_counter() - t0
            t1 = time.perf_counter()
            chunk, keep, ts = self._validate_chunk(chunk, unparseable)
            self.timings["validate"] += time.perf_counter() - t1
            t2 = time.perf_counter()
            self._stage(chunk, keep, ts, time_text)
            self.timings["stage"] += time.perf_counter() - t2

    def _validate_chunk(self, chunk, unparseable):
        """(chunk without exact duplicates, rows to keep, their int64-ns timestamps)."""
        import numpy as np

        ts, has_ts, row_hash = self._timestamps(chunk)
        # Exact duplicate rows (same timestamp, same values) collapse to one, silently counted.
        exact_dup = _duplicate_rows(chunk, ts, has_ts, row_hash, self.seen, self.conflicting_ts)
        self.result["rows_duplicate"] += int(exact_dup.sum())
        fresh_rows = None
        if exact_dup.any():  # most chunks have none: no copy then
            fresh_rows = ~exact_dup
            chunk, unparseable = chunk[fresh_rows], unparseable[fresh_rows]
            ts, has_ts = ts[fresh_rows], has_ts[fresh_rows]
            row_hash = row_hash[fresh_rows] if row_hash is not None else None
        masks = self._flag(chunk, unparseable, ts)
        keep = self._apply_rules(chunk, unparseable, masks, fresh_rows)
        if self.rows_across_chunks and has_ts.any():
            order = np.argsort(ts[has_ts], kind="stable")
            self.seen.append((ts[has_ts][order], row_hash[has_ts][order]))
        return chunk, keep, ts

    def _timestamps(self, chunk):
        """(int64-ns timestamps, has-timestamp mask, row hashes or None); raises
        _ChunksOverlapInTime when hashes are not kept and this chunk overlaps an earlier one."""
        column = chunk[self.dataset.time_column]
        ts = column.to_numpy(dtype="datetime64[ns]").astype("int64")
        has_ts = column.notna().to_numpy()
        if not self.rows_across_chunks and has_ts.any():
            span = (ts[has_ts].min(), ts[has_ts].max())
            if any(_overlap(span, earlier) for earlier in self.time_ranges):
                raise _ChunksOverlapInTime
            self.time_ranges.append(span)
        row_hash = _row_hashes(chunk) if self.rows_across_chunks else None
        return ts, has_ts, row_hash

    def _flag(self, chunk, unparseable, ts) -> dict:
        """Every rule on every row, vectorised (the masks read the suite's kwargs): {rule: mask}.
        GX sees every flagged row and a sample of the clean ones (see _gx_subset)."""
        import numpy as np

        from mlops.ingest import validation

        masks = {validation.rule_name(r): validation.violation_mask(chunk, r) for r in self.rules}
        flagged = unparseable.to_numpy().copy()
        if self.conflicting_ts:
            flagged |= np.isin(ts, np.fromiter(self.conflicting_ts, dtype="int64"))
        for name, mask in masks.items():
            self.policy_counts[name] = self.policy_counts.get(name, 0) + int(mask.sum())
            flagged = flagged | mask
        self.gx_rows.append(_gx_subset(chunk, flagged, self.gx_budget))
        return masks

    def _apply_rules(self, chunk, unparseable, masks: dict, fresh_rows):
        """The rows to keep: set_null first (the row stays), then the drop rules on what remains."""
        from mlops.ingest import validation

        keep = ~unparseable.to_numpy()
        self._drop(unparseable.to_numpy(), "unparseable value")
        for rule, fault in self.row_faults.items():
            if fault["mask"] is not None:
                mask = fault["mask"].to_numpy() if fresh_rows is None else fault["mask"].to_numpy()[fresh_rows]
                self._drop(mask & keep, rule)
                keep &= ~mask
                fault["mask"] = None
        nulled_columns = self._set_nulls(chunk, masks)
        for rule in self.rules:
            if rule["meta"]["on_failure"] != "set_null":
                mask = masks[validation.rule_name(rule)]
                if rule["kwargs"]["column"] in nulled_columns:  # values changed by set_null
                    mask = validation.violation_mask(chunk, rule)
                self._drop(mask & keep, validation.rule_name(rule))
                keep = keep & ~mask
        return keep

    def _set_nulls(self, chunk, masks: dict) -> set:
        """Null the values set_null rules flag (in place); the columns changed."""
        import numpy as np

        from mlops.ingest import validation

        nulled_columns = set()
        for rule in self.rules:
            name = validation.rule_name(rule)
            if rule["meta"]["on_failure"] == "set_null" and masks[name].any():
                self.nulled[name] = self.nulled.get(name, 0) + int(masks[name].sum())
                chunk.loc[masks[name], rule["kwargs"]["column"]] = np.nan
                nulled_columns.add(rule["kwargs"]["column"])
        return nulled_columns

    def _stage(self, chunk, keep, ts, time_text) -> None:
        """Append the kept rows to the staging Parquet file."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        kept = chunk[keep].copy()
        kept[f"__text__{self.dataset.time_column}"] = time_text.loc[kept.index]
        frame = _stage_frame(kept, self.dataset)
        frame["__ts__"] = ts[keep]
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.staged, table.schema)
        self.writer.write_table(table.cast(self.writer.schema))
        self.staged_rows += len(frame)
        del table, frame
        pa.default_memory_pool().release_unused()  # mimalloc keeps freed chunks otherwise

    def _finish(self) -> None:
        """GX on the sample, conflicting timestamps, then the counts into the result."""
        import pandas as pd

        if self.gx_rows:
            t1 = time.perf_counter()
            _validate_with_gx(
                self.result, self.totals, self.runner, pd.concat(self.gx_rows), self.policy_counts, self.gx_budget
            )
            self.timings["validate"] += time.perf_counter() - t1
        if self.conflicting_ts and self.staged_rows:
            # Rows sharing a timestamp with different values: all of them go (rewrite the staging file).
            self.staged_rows, conflicts_dropped = _drop_timestamps(self.staged, self.conflicting_ts)
            if conflicts_dropped:
                rule = "expect_column_values_to_be_unique(" + self.dataset.time_column + ") conflicting values"
                self.dropped[rule] = conflicts_dropped
        result, shape = self.result, self.shape
        if self.reader is not None and shape is not None and result["rows_in"] != shape.data_rows:
            result["structural_errors"].append(
                f"{shape.data_rows} records counted but {result['rows_in']} rows read: quoting the reader"
                " and the field count disagree on; the batch is held back"
            )
        result["row_faults"] = {
            rule: {"count": f["count"], "examples": f["examples"]} for rule, f in self.row_faults.items() if f["count"]
        }
        result["expectations"] = list(self.totals.values())
        result["parse_errors"] = list(self.parse_errors.values())
        result["dropped_by_rule"] = self.dropped
        result["nulled_by_rule"] = self.nulled
        result["rows_kept"] = self.staged_rows
        result["rows_dropped"] = sum(self.dropped.values())
        considered = max(result["rows_in"] - result["rows_duplicate"], 1)
        result["bad_row_fraction"] = round(result["rows_dropped"] / considered, 6)


def _empty_result(object_key: str, suite_name: str, policy) -> dict:
    """A validation result before any row is read."""
    return {
        "object_key": object_key,
        "suite": suite_name,
        "great_expectations_version": _gx_version(),
        "rows_in": 0,
        "rows_kept": 0,
        "rows_dropped": 0,
        "rows_duplicate": 0,
        "max_bad_row_fraction": policy.max_bad_row_fraction,
        "structural_errors": [],
        "parse_errors": [],
        "dropped_by_rule": {},
        "nulled_by_rule": {},
        "expectations": [],
    }


def _structural_problem(exc: Exception) -> str | None:
    """What a reader's exception says about bad input, or None when it is not about the input."""
    import pandas as pd

    from mlops.ingest import csv_shape

    if isinstance(exc, csv_shape.ShapeError):
        return str(exc)
    if isinstance(exc, pd.errors.EmptyDataError):
        return "empty file: no header and no data"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text: byte {exc.object[exc.start : exc.start + 1]!r} cannot be decoded"
    if isinstance(exc, (EOFError, gzip.BadGzipFile, zlib.error)):
        return f"corrupt or truncated gzip: {exc}"
    if isinstance(exc, pd.errors.ParserError):
        return f"malformed CSV (wrong delimiter, quoting or field count): {exc}"
    if isinstance(exc, (ValueError, OSError)):  # pandas' other complaints about undecodable input
        return f"unreadable file: {type(exc).__name__}: {exc}"
    return None


def _decide(result: dict, policy) -> dict:
    """Set result's status ("passed" or "quarantined") and reason; returns result."""
    _add_verdict_errors(result, policy)
    dropped = result["dropped_by_rule"]
    if result["structural_errors"]:
        result["status"] = "quarantined"
        result["reason"] = "; ".join(result["structural_errors"])
    elif result["bad_row_fraction"] > policy.max_bad_row_fraction:
        considered = max(result["rows_in"] - result["rows_duplicate"], 1)
        result["status"] = "quarantined"
        worst = ", ".join(f"{k}: {v}" for k, v in sorted(dropped.items(), key=lambda kv: -kv[1]))
        result["reason"] = (
            f"{result['rows_dropped']} of {considered} rows ({result['bad_row_fraction']:.1%}) break row rules, "
            f"above validation.max_bad_row_fraction={policy.max_bad_row_fraction:.1%} ({worst})"
        )
    else:
        result["status"] = "passed"
        result["reason"] = f"dropped {result['rows_dropped']} bad row(s): {dropped}" if result["rows_dropped"] else None
    return result


def _add_verdict_errors(result: dict, policy) -> None:
    """Structural errors found only on the whole file: too few rows, no valid row, a failed
    quarantine expectation (each only when nothing structural was found before)."""
    errors = result["structural_errors"]
    if not errors:
        if result["rows_in"] < policy.min_rows:
            errors.append(f"{result['rows_in']} data row(s) (header only?); at least {policy.min_rows} required")
        elif result["rows_kept"] == 0:
            errors.append("no valid rows: every row broke a rule")
    for exp in result["expectations"]:
        if exp["on_failure"] == "quarantine" and not exp["success"] and not errors:
            errors.append(f"{exp['expectation']} failed: {exp.get('details') or exp.get('observed_value')}")


def _open_reader(path: Path, shape, dataset, policy, result: dict, guarded):
    """A chunked pandas reader of a well-formed file, or None with the structural error noted.

    The declared types decide the dtypes (string and datetime columns are read as text, so
    nothing is guessed), only the configured markers mean missing, and the header was checked
    on the raw file (pandas would rename a duplicated 'Humidity' to 'Humidity.1').
    """
    import pandas as pd

    if shape is None:
        if not result["structural_errors"]:
            result["structural_errors"].append("empty file: no header and no data")
        return None
    problem = _header_problem(shape.header, list(dataset.columns))
    if problem:
        result["structural_errors"].append(problem)
        return None
    source = shape.clean_path or path
    return guarded(
        lambda: pd.read_csv(
            source,
            compression=None if shape.clean_path else _compression(path),
            encoding="utf-8",
            encoding_errors="strict",
            chunksize=policy.chunk_rows,
            low_memory=True,
            index_col=False,
            dtype={n: str for n, c in dataset.columns.items() if c.type in ("string", "datetime")},
            keep_default_na=False,
            na_values={n: dataset.missing_values_of(n) for n in dataset.columns},
        )
    )


def _header_problem(header: list[str], expected: list[str]) -> str | None:
    seen: set[str] = set()
    repeated = sorted({name for name in header if name in seen or seen.add(name)})
    problems = [_column_problem(header, expected)] if set(header) != set(expected) else []
    if repeated:
        problems.append(f"duplicated column name(s) in the header: {bounded(repeated)}")
    return "; ".join(problems) or None


def bounded(names: list, shown: int = 5) -> str:
    """A list for a reason or a log line: the first `shown` items and how many more."""
    names = list(names)
    head = ", ".join(repr(str(n)[:60]) for n in names[:shown])
    return f"[{head}{f', ... and {len(names) - shown} more' if len(names) > shown else ''}]"


def _overlap(span: tuple, other: tuple) -> bool:
    """Whether two (first, last) timestamp ranges share a point."""
    return span[0] <= other[1] and other[0] <= span[1]


def _row_hashes(frame):
    """One 64-bit hash per row over every column, the timestamp included: equal hashes = equal rows."""
    import pandas as pd

    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


def _duplicate_rows(chunk, ts, has_ts, row_hash, seen: list[tuple], conflicting_ts: set[int]):
    """Rows that exactly repeat an earlier row of the file (same timestamp, same values): a mask.
    Timestamps shared by rows with different values are added to `conflicting_ts`.

    Only rows whose timestamp occurs more than once can be either, so within the chunk only
    those are hashed (`row_hash`, every row's hash, is given only when `seen` is kept: each
    earlier chunk's sorted timestamps and row hashes; earlier chunks outside this chunk's time
    range are skipped).
    """
    import numpy as np
    import pandas as pd

    exact_dup = np.zeros(len(ts), dtype=bool)
    dated = np.flatnonzero(has_ts)
    if not len(dated):
        return exact_dup
    times = ts[dated]
    shared = dated[:0]  # rows whose timestamp repeats within this chunk
    steps = np.diff(times)
    if not ((steps > 0).all() or (steps < 0).all()):  # not strictly in (reverse) time order
        shared = dated[pd.Series(times).duplicated(keep=False).to_numpy()]
        shared_hash = row_hash[shared] if row_hash is not None else _row_hashes(chunk.iloc[shared])
        exact_dup[shared] = pd.Series(shared_hash).duplicated().to_numpy()
    span = (times.min(), times.max())
    for seen_ts, seen_hash in seen:
        if not _overlap(span, (seen_ts[0], seen_ts[-1])):
            continue
        pos = np.minimum(np.searchsorted(seen_ts, ts), len(seen_ts) - 1)
        ts_seen = (seen_ts[pos] == ts) & has_ts
        exact_dup |= ts_seen & (seen_hash[pos] == row_hash)
        conflicting_ts.update(ts[ts_seen & (seen_hash[pos] != row_hash)].tolist())
    fresh_shared = shared[~exact_dup[shared]]
    clash = pd.Series(ts[fresh_shared]).duplicated(keep=False).to_numpy()
    conflicting_ts.update(ts[fresh_shared][clash].tolist())
    return exact_dup


# GX validates every row that breaks a rule (up to this many) plus a sample of the clean rows.
GX_MAX_FLAGGED_ROWS = 50_000
GX_CLEAN_SAMPLE_ROWS = 10_000


def _gx_subset(chunk, flagged, budget: dict):
    """The rows of a chunk that GX will see: the flagged ones and a random share of the clean.

    Running the whole suite on every row costs ~4x the CSV parse (GX builds a metric graph per
    run and copies frames per expectation). For column-map expectations a run on the flagged
    rows plus clean rows gives the same verdicts, unexpected counts and examples as a run on the
    whole batch, because every unexpected row is in it; the clean sample lets GX check that
    the vectorised masks missed nothing (_validate_with_gx compares the counts).
    """
    import numpy as np

    bad = np.flatnonzero(flagged)[: budget["flagged"]]
    budget["flagged"] -= len(bad)
    budget.setdefault("flagged_truncated", False)
    if len(bad) < int(flagged.sum()):
        budget["flagged_truncated"] = True
    clean = np.flatnonzero(~flagged)
    take = min(len(clean), budget["clean"], max(1000, len(chunk) // 20))
    sample = budget["rng"].choice(clean, size=take, replace=False) if take else clean[:0]
    budget["clean"] = max(budget["clean"] - take, 0)
    budget["rows"] = budget.get("rows", 0) + len(chunk)
    return chunk.iloc[np.sort(np.concatenate([bad, sample]))]


def _validate_with_gx(result: dict, totals: dict, runner, subset, policy_counts: dict, budget: dict) -> None:
    """One GX run on the subset; its unexpected counts must equal the row policy's."""
    from mlops.ingest import validation

    validation.merge_results(totals, runner.run(subset))
    result["gx_rows_validated"] = len(subset)
    result["gx_note"] = (
        f"Great Expectations validated {len(subset)} of {budget.get('rows', 0)} rows: every row breaking a rule"
        f"{' (first ' + str(GX_MAX_FLAGGED_ROWS) + ')' if budget.get('flagged_truncated') else ''}"
        " and a random sample of the others; counts of unexpected values are over the whole batch."
    )
    for item in totals.values():
        if item.get("column") is None or item["expectation"] == "expect_column_values_to_be_unique":
            continue
        name = f"{item['expectation']}({item['column']})"
        item["element_count"] = budget.get("rows", item.get("element_count"))
        if name in policy_counts and not budget.get("flagged_truncated"):
            gx_count, ours = item.get("unexpected_count") or 0, policy_counts[name]
            if gx_count != ours:
                result["structural_errors"].append(
                    f"validation disagreement on {name}: Great Expectations found {gx_count} unexpected"
                    f" value(s), the row policy {ours}; the batch is held back until this is understood"
                )
            item["unexpected_count"] = ours


def _drop_timestamps(staged: Path, timestamps: set[int]) -> tuple[int, int]:
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(staged)  # only reached for batches with conflicting duplicates
    doomed = pc.is_in(table["__ts__"], value_set=__import__("pyarrow").array(np.array(sorted(timestamps))))
    kept = table.filter(pc.invert(doomed))
    pq.write_table(kept, staged)
    return kept.num_rows, table.num_rows - kept.num_rows


def _column_problem(header: list[str], expected: list[str]) -> str:
    missing = [c for c in expected if c not in header]
    extra = [c for c in header if c not in expected]
    if len(header) == 1 and any(sep in header[0] for sep in (";", "\t", "|")):
        return (
            f"wrong delimiter: the header is one column {header[0][:80]!r};"
            f" expected comma-separated {bounded(expected, 10)}"
        )
    parts = []
    if missing:
        parts.append(f"missing column(s) {bounded(missing)}")
    if extra:
        parts.append(f"unexpected column(s) {bounded(extra)}")
    if missing and extra:
        parts.append("(renamed?)")
    return "columns do not match the data set: " + " ".join(parts)


def _gx_version() -> str:
    import great_expectations

    return great_expectations.__version__


# ---------------------------------------------------------------- one object, end to end


def _resolve(key: str) -> tuple[str, str | None]:
    """(kind, batch_id) of a key: landing objects, or replays of raw/ and quarantine/ copies."""
    storage = get_config().storage
    for kind, prefix in (("raw", storage.raw_prefix), ("quarantine", storage.quarantine_prefix)):
        if key.startswith(prefix):
            rest = key[len(prefix) :].split("/", 1)
            if len(rest) == 2 and re.fullmatch(r"[0-9a-f]{16}", rest[0]) and rest[1] and "report" not in rest[1]:
                return kind, rest[0]
            raise BadBatch(
                f"{key}: a replay key must look like {prefix}<batch_id>/<file> (the raw file of a batch)",
                {"object_key": key},
            )
    if key.startswith(storage.landing_prefix) and not key.endswith("/"):
        return "landing", None
    raise BadBatch(
        f"{key}: not under {storage.landing_prefix}, {storage.raw_prefix} or {storage.quarantine_prefix}",
        {"object_key": key},
    )


def process_object(key: str) -> dict:
    """Ingest one object end to end. Returns a small summary; raises BadBatch when quarantined."""
    with shared_connections():
        return _process_object(key)


def _process_object(key: str) -> dict:
    """Download and identify one object, validate it, then quarantine (raises BadBatch) or load it."""
    kind, replay_batch = _resolve(key)
    with tempfile.TemporaryDirectory(prefix="ingest-") as tmp:
        tmpdir = Path(tmp)
        if kind == "landing" and not object_exists(key):
            return _already_processed(key)
        arrival = _identify(key, kind, replay_batch, download(key, tmpdir))
        local, batch_id, raw_key = arrival.local, arrival.batch_id, arrival.raw_key
        log.info("object %s: %d bytes, sha256 %s -> batch %s", key, local.size, local.sha256, batch_id)

        existing = get_batch(batch_id)
        if kind == "landing" and existing and existing["status"] in ("loaded", "duplicate"):
            put_verified(local, raw_key)  # make sure the raw copy exists before the landing object goes
            delete_if_unchanged(key, local.etag)
            log.info("batch %s was already %s: landing object removed, nothing loaded", batch_id, existing["status"])
            return {"object_key": key, **_summary(existing), "new_rows": 0, "note": "same file seen before"}
        put_verified(local, raw_key)
        same_content = loaded_batch_with_checksum(local.sha256)
        if kind == "landing" and same_content and same_content["batch_id"] != batch_id:
            return _record_duplicate(key, kind, batch_id, local, raw_key)

        staged = tmpdir / "staged.parquet"
        result = validate_file(local.path, staged, arrival.original_key)
        result.update(batch_id=batch_id, checksum=local.sha256, raw_uri=_uri(raw_key), replayed_from=key)
        if result["status"] != "passed":
            _quarantine(arrival, result)
        return _load(arrival, result, staged)


@dataclasses.dataclass(frozen=True)
class _Arrival:
    """An object being ingested: the key it came under, its kind ('landing', 'raw', 'quarantine'),
    the landing key it first arrived under, its batch, local copy and raw copy's key."""

    key: str
    kind: str
    original_key: str
    batch_id: str
    local: Download
    raw_key: str


def _already_processed(key: str) -> dict:
    """A landing key with no object: the summary of the batch that handled it (a retry), or BadBatch."""
    done = [b for b in batches_for_key(key) if b["status"] in FINAL_STATUSES]
    if done:
        return {"object_key": key, **_summary(done[0]), "new_rows": 0, "note": "already processed"}
    raise BadBatch(f"{key}: no such object in s3://{get_config().storage.bucket}", {"object_key": key})


def _identify(key: str, kind: str, replay_batch: str | None, local: Download) -> _Arrival:
    """The batch of a downloaded object: from key and content for landing objects, the recorded
    batch (whose checksum must match) for replays."""
    if kind == "landing":
        original_key, batch_id = key, batch_id_for(key, local.sha256)
    else:
        previous = get_batch(replay_batch)
        if previous is None or previous["checksum"] != local.sha256:
            raise BadBatch(f"{key}: no batch {replay_batch} with this content in the batches table", {})
        original_key, batch_id = previous["object_key"], replay_batch
    raw_key = f"{get_config().storage.raw_prefix}{batch_id}/{safe_name(original_key)}"
    return _Arrival(key, kind, original_key, batch_id, local, raw_key)


def _batch_values(arrival: _Arrival, result: dict) -> dict:
    """The batches-table row of a validated arrival (without status and report)."""
    return {
        "batch_id": arrival.batch_id,
        "object_key": arrival.original_key,
        "checksum": arrival.local.sha256,
        "raw_uri": _uri(arrival.raw_key),
        "rows_in": result["rows_in"],
        "rows_kept": result["rows_kept"] if result["status"] == "passed" else 0,
        "rows_dropped": result["rows_dropped"],
        "reason": result["reason"],
    }


def _quarantine(arrival: _Arrival, result: dict) -> None:
    """Copy the file and its report under quarantine/, record the batch, raise BadBatch."""
    from mlops.health.model import report_view_url
    from mlops.ingest import validation

    batch_values = _batch_values(arrival, result)
    folder = f"{get_config().storage.quarantine_prefix}{arrival.batch_id}/"
    result["status"] = "quarantined"
    report_uri = _uri(folder + "report.html")
    result["report_uri"] = report_uri
    put_verified(arrival.local, folder + safe_name(arrival.original_key))
    put_json(folder + "validation.json", result)
    put_text(folder + "report.html", validation.render_html(result), "text/html; charset=utf-8")
    record_batch(**batch_values, status="quarantined", report_uri=report_uri)
    if arrival.kind == "landing":
        delete_if_unchanged(arrival.key, arrival.local.etag)
    message = (
        f"{arrival.original_key} (batch {arrival.batch_id}) quarantined: {result['reason']}\n"
        f"{validation.describe_failures(result)}\nreport: {report_uri}\n"
        f"open it in the Model health view: {report_view_url(report_uri)}"
    )
    log.error(message)
    raise BadBatch(message, result)


def _load(arrival: _Arrival, result: dict, staged: Path) -> dict:
    """Write the report, load the staged rows, remove the landing object; the task's summary."""
    from mlops.ingest import validation

    batch_values = _batch_values(arrival, result)
    folder = f"{get_config().storage.reports_prefix}{arrival.batch_id}/"
    report_uri = _uri(folder + "report.html")
    result["status"] = "loaded"
    result["report_uri"] = report_uri
    put_json(folder + "validation.json", result)
    put_text(folder + "report.html", validation.render_html(result), "text/html; charset=utf-8")
    try:
        loaded = load_batch(staged, {**batch_values, "status": "loaded", "report_uri": report_uri})
    except SameContentLoaded:
        # Another task loaded the same content under another key meanwhile: it won the claim.
        return _record_duplicate(arrival.key, arrival.kind, arrival.batch_id, arrival.local, arrival.raw_key)
    if loaded.conflicts["count"]:
        _report_conflicts(arrival.original_key, arrival.batch_id, result, loaded.conflicts, folder)
    if arrival.kind == "landing":
        delete_if_unchanged(arrival.key, arrival.local.etag)
    _log_loaded(arrival.original_key, result, loaded.new_rows)
    return {
        "object_key": arrival.original_key,
        "batch_id": arrival.batch_id,
        "status": "loaded",
        "rows_in": result["rows_in"],
        "rows_kept": result["rows_kept"],
        "rows_dropped": result["rows_dropped"],
        "new_rows": loaded.new_rows,
        "conflicts": loaded.conflicts["count"],
        "report_uri": result["report_uri"],
    }


def _log_loaded(object_key: str, result: dict, new_rows: int) -> None:
    """Log a loaded batch: its dropped rows (a warning) and its counts and report."""
    from mlops.health.model import report_view_url
    from mlops.ingest import validation

    if result["rows_dropped"]:
        log.warning(
            "%s: loaded without %d bad row(s):\n%s",
            object_key,
            result["rows_dropped"],
            validation.describe_failures(result),
        )
    log.info(
        "%s: batch %s loaded, %d rows kept (%d new in observations), report %s (view: %s)",
        object_key,
        result["batch_id"],
        result["rows_kept"],
        new_rows,
        result["report_uri"],
        report_view_url(result["report_uri"]),
    )


def _report_conflicts(object_key: str, batch_id: str, result: dict, conflicts: dict, folder: str) -> None:
    """Log the batch's conflicts (count and examples) and add them to its report (rewritten:
    they are known only once the load committed; observation_conflicts holds every row)."""
    from mlops.ingest import validation

    result["conflicts"] = conflicts
    verb = (
        "replaced by this batch" if conflicts["on_conflict"] == "replace" else "kept (ingest.on_conflict: keep_first)"
    )
    examples = "\n".join(
        f"  {e['time']}: stored by batch {e['stored_batch_id']} {e['stored']} -> this file {e['new']}"
        for e in conflicts["examples"]
    )
    log.warning(
        "%s (batch %s): %d row(s) carry a timestamp already stored with other values; the stored rows were %s."
        " First %d:\n%s\nevery one is in observation_conflicts (batch_id = '%s')",
        object_key,
        batch_id,
        conflicts["count"],
        verb,
        len(conflicts["examples"]),
        examples,
        batch_id,
    )
    put_json(folder + "validation.json", result)
    put_text(folder + "report.html", validation.render_html(result), "text/html; charset=utf-8")


def _record_duplicate(key: str, kind: str, batch_id: str, local: Download, raw_key: str) -> dict:
    """Record a batch whose content another batch already loaded; remove its landing object."""
    checksum = local.sha256
    same_content = loaded_batch_with_checksum(checksum)
    if same_content is None or same_content["batch_id"] == batch_id:
        raise RuntimeError(f"batch {batch_id}: no other loaded batch with checksum {checksum}")  # retried
    record_batch(
        batch_id=batch_id,
        object_key=key,
        checksum=checksum,
        raw_uri=_uri(raw_key),
        rows_in=0,
        rows_kept=0,
        rows_dropped=0,
        status="duplicate",
        reason=f"same content as batch {same_content['batch_id']} ({same_content['object_key']})",
        report_uri=same_content.get("report_uri"),
    )
    if kind == "landing":
        delete_if_unchanged(key, local.etag)
    log.info("%s: same content as batch %s, recorded as duplicate", key, same_content["batch_id"])
    return {"object_key": key, "batch_id": batch_id, "status": "duplicate", "new_rows": 0}


def _summary(batch: dict) -> dict:
    return {k: batch.get(k) for k in ("batch_id", "status", "rows_kept", "report_uri")}


__all__ = [
    "BadBatch",
    "batch_id_for",
    "batch_id_of_content",
    "batches_for_key",
    "landing_keys",
    "mark_announced",
    "not_ingestible",
    "object_exists",
    "process_object",
    "process_objects",
    "safe_name",
    "sensor_pattern",
    "shared_connections",
    "spread",
    "task_label",
    "unannounced_batches",
    "validate_file",
]
