"""Ingest one object from the landing area: raw copy, validation, then load or quarantine.

The path of a file (all keys under config.storage.bucket):

1. ``landing/<name>`` is streamed to a local temporary file while its SHA-256 is computed
   (its MD5 later, only if a check needs it). The batch id is
   ``sha256(key + "\\n" + content sha256)[:16]``: the same file dropped twice has the same id
   and is not loaded twice (the ``batches`` table says so).
2. It is copied to the immutable ``raw/<batch_id>/<safe name>`` (a server-side copy of the
   version read, or an upload of the local file) and the copy is verified (size, and MD5 or
   ETag against what was read). The landing object is removed only at the very end,
   after the batch's final status is committed: if anything dies on the way, the file is still
   in landing and the next run finishes the job (every step is idempotent).
3. The file is read in chunks (never whole), parsed to the configured types and validated with
   the Great Expectations suite (mlops.ingest.chunks; mlops.ingest.validation has the row policy). Kept rows are staged
   to a local Parquet file, or on PostgreSQL loaded while the next chunk is validated
   (mlops.ingest.load.LoadDuringValidation, committed only if the batch passes).
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
import functools
import hashlib
import logging
import re
import tempfile
import unicodedata
from pathlib import Path

from mlops.config import get_config
from mlops.ingest.chunks import bounded, validate_file
from mlops.ingest.load import SameContentLoaded, load_batch, record_batch
from mlops.ingest.load import engine as _engine
from mlops.io.connections import shared_connections

log = logging.getLogger(__name__)

READ_BLOCK = 1024 * 1024
FINAL_STATUSES = ("loaded", "quarantined", "duplicate")


class BadBatch(Exception):
    """The file cannot be loaded: quarantined. The message names file, column and rule."""

    def __init__(self, message: str, result: dict):
        super().__init__(message)
        self.result = result


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
    """A local copy of an object: its path, size, SHA-256, and the key and ETag it was read from."""

    path: Path
    size: int
    sha256: str
    etag: str = ""
    key: str = ""

    @functools.cached_property
    def md5(self) -> str:
        """The file's MD5 (hex), read when first asked for: only an upload or a stored ETag
        other than the one read needs it (0.15 s for 93 MB, off the usual path)."""
        digest = hashlib.md5(usedforsecurity=False)
        with open(self.path, "rb") as local:
            while block := local.read(READ_BLOCK):
                digest.update(block)
        return digest.hexdigest()


def download(key: str, directory: Path) -> Download:
    """Stream an object to a local file, hashing as it goes (memory stays at one block)."""
    response = _client().get_object(Bucket=get_config().storage.bucket, Key=key)
    body = response["Body"]
    sha, size = hashlib.sha256(), 0
    path = directory / "object"
    with open(path, "wb") as out:
        for block in body.iter_chunks(READ_BLOCK):
            sha.update(block)
            size += len(block)
            out.write(block)
    return Download(path=path, size=size, sha256=sha.hexdigest(), etag=response["ETag"], key=key)


def put_verified(local: Download, key: str) -> None:
    """Make `key` hold the content of `local`, checked: same size, and an ETag that is the MD5
    of what was read or the ETag of the very version read.

    An existing object at `key` that passes the check is kept as is (raw is immutable; a rerun
    finds the copy already made). Otherwise a server-side copy of the object `local` was read
    from, conditional on its ETag (CopySourceIfMatch: only that version, whose hashes we hold;
    the store moves the bytes, this process sends none); if that version is gone or the store
    refuses, the local file is uploaded with its MD5 (ContentMD5, checked by the store).
    Raises OSError when the stored object does not pass the check.
    """
    from botocore.exceptions import ClientError

    client, bucket = _client(), get_config().storage.bucket
    with contextlib.suppress(ClientError):
        if _holds(client.head_object(Bucket=bucket, Key=key), local):
            return
    metadata = {"sha256": local.sha256}
    try:
        if not local.key or not local.etag:
            raise LookupError("no source object to copy")
        source = {"Bucket": bucket, "Key": local.key}
        client.copy_object(
            Bucket=bucket, Key=key, CopySource=source, CopySourceIfMatch=local.etag,
            MetadataDirective="REPLACE", Metadata=metadata,
        )  # fmt: skip
    except (ClientError, LookupError) as exc:
        log.info("%s: server-side copy not made (%s); uploading the local copy", key, exc)
        with open(local.path, "rb") as body:
            md5 = base64.b64encode(bytes.fromhex(local.md5)).decode()
            client.put_object(Bucket=bucket, Key=key, Body=body, ContentMD5=md5, Metadata=metadata)
    head = client.head_object(Bucket=bucket, Key=key)
    if not _holds(head, local):
        # Raised as a plain error: the task is retried, the landing object is still there.
        raise OSError(
            f"copy to {_uri(key)} not verified: size {head['ContentLength']} vs {local.size}, "
            f"etag {head['ETag']} vs md5 {local.md5} / read etag {local.etag}"
        )


def _holds(head: dict, local: Download) -> bool:
    """Whether a HEAD response describes the content of `local`: the same size, and an ETag equal
    to its MD5 (a single-part object) or to the ETag it was read under (a copy that kept it)."""
    etag = head["ETag"].strip('"')
    # The ETag read first: the MD5 is computed only when that does not settle it.
    return head["ContentLength"] == local.size and (etag == local.etag.strip('"') or etag == local.md5)


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
            conn.execute(statement, {"batch_id": batch_id, "announced_at": warehouse.now_text()})


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
        with _in_background(_engine):  # the warehouse connects (and checks its schema) meanwhile
            if kind == "landing" and not object_exists(key):
                return _already_processed(key)
            local = download(key, tmpdir)
        arrival = _identify(key, kind, replay_batch, local)
        local, batch_id, raw_key = arrival.local, arrival.batch_id, arrival.raw_key
        log.info("object %s: %d bytes, sha256 %s -> batch %s", key, local.size, local.sha256, batch_id)

        existing = get_batch(batch_id)
        if kind == "landing" and existing and existing["status"] in ("loaded", "duplicate"):
            put_verified(local, raw_key)  # make sure the raw copy exists before the landing object goes
            delete_if_unchanged(key, local.etag)
            log.info("batch %s was already %s: landing object removed, nothing loaded", batch_id, existing["status"])
            return {"object_key": key, **_summary(existing), "new_rows": 0, "note": "same file seen before"}
        # The raw copy uploads while the file is validated (network and CPU at once); it is
        # verified before anything records the batch or removes the landing object.
        with _in_background(put_verified, local, raw_key) as raw_copy:
            same_content = loaded_batch_with_checksum(local.sha256)
            if kind == "landing" and same_content and same_content["batch_id"] != batch_id:
                raw_copy.result()
                return _record_duplicate(key, kind, batch_id, local, raw_key)
            with _load_during_validation(arrival) as loading:
                staged = tmpdir / "staged.parquet"
                result = validate_file(local.path, staged, arrival.original_key, sink=loading)
                raw_copy.result()
                result.update(batch_id=batch_id, checksum=local.sha256, raw_uri=_uri(raw_key), replayed_from=key)
                if result["status"] != "passed":
                    if loading is not None:
                        loading.abandon()  # before _quarantine records the batch
                    _quarantine(arrival, result)
                return _load(arrival, result, staged, loading)


@contextlib.contextmanager
def _load_during_validation(arrival: _Arrival):
    """The batch's LoadDuringValidation for the block (None where it does not apply); leaving the
    block rolls back whatever it did not commit."""
    from mlops.ingest import load

    if not load.load_during_validation_applies():
        yield None
        return
    claim = {"batch_id": arrival.batch_id, "object_key": arrival.original_key, "checksum": arrival.local.sha256}
    loading = load.LoadDuringValidation({**claim, "raw_uri": _uri(arrival.raw_key), "status": "loaded"})
    try:
        yield loading
    finally:
        loading.abandon()


@contextlib.contextmanager
def _in_background(function, *args):
    """Run function(*args) in a thread (in this context: the shared clients) for the block; yields
    its Future. Leaving the block waits for it; an error of the block wins over the thread's."""
    import concurrent.futures
    import contextvars

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        yield pool.submit(contextvars.copy_context().run, function, *args)


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


def _load(arrival: _Arrival, result: dict, staged: Path, loading=None) -> dict:
    """Write the report, commit the load done during validation (`loading`, a
    LoadDuringValidation) or load the staged rows, remove the landing object; the task's summary."""
    from mlops.ingest import validation

    batch_values = _batch_values(arrival, result)
    folder = f"{get_config().storage.reports_prefix}{arrival.batch_id}/"
    report_uri = _uri(folder + "report.html")
    result["status"] = "loaded"
    result["report_uri"] = report_uri
    put_json(folder + "validation.json", result)
    put_text(folder + "report.html", validation.render_html(result), "text/html; charset=utf-8")
    batch_values.update(status="loaded", report_uri=report_uri)
    try:
        loaded = loading.finish(batch_values) if loading is not None else None
        if loaded is None:  # not loaded during validation, or that load was abandoned
            loaded = load_batch(staged, batch_values)
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
