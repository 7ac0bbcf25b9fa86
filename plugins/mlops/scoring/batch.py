"""Batch scoring: the registered model's `champion` (and, in the shadow, its `challenger`).

The flow of one run of the batch_score DAG:

1. `resolve_models()` turns the aliases into version numbers once, so every batch of the run
   is scored by the same versions even if an alias moves meanwhile.
2. `plan_batches()` picks the batches: one named batch (replay), the batches with
   observations in a time range (backfill), or, when new data arrived, every loaded batch
   that has no predictions yet from the current versions.
3. `score_batch()` streams the batch from the warehouse in chunks (keyset pagination on the
   time column), checks each chunk against the model's signature, scores it with every
   role, and writes the predictions to the warehouse and to Parquet in the object store.
   `score_group()` does so for a group's batches in order, the models loaded once; batches
   smaller than a chunk are predicted together (one predict_proba per chunk of rows), then
   committed and published one by one.

A batch is the unit of storage: its predictions by one model version in one role are
replaced as a whole (delete + insert in one transaction; the Parquet file is written to a
staging key and copied into place), so a rerun never duplicates rows. A new version gets
its own rows and its own Parquet key. Nothing is written when a chunk breaks the signature.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote as url_quote

from airflow.sdk.exceptions import AirflowFailException

from mlops.config import get_config
from mlops.crashpoints import crash_point
from mlops.io import warehouse
from mlops.io.registry import CHALLENGER, CHAMPION

log = logging.getLogger(__name__)

ROLES = (CHAMPION, CHALLENGER)
PART_FILE = "part-00000.parquet"
SINGLE_PUT_BYTES = 32 * 1024 * 1024  # staged files below this go up in one PUT
S3_THREADS = 4  # concurrent staging uploads and copies of a group's small batches
# Text that sorts before / after every timestamp in TIMESTAMP_FORMAT.
TIME_MIN, TIME_MAX = "", "9999-12-31 23:59:59"
# Signature types (mlflow DataType names) and the configuration's column types.
_NUMERIC = {"double", "float", "long", "integer"}
_CONFIG_TO_SIGNATURE = {
    "datetime": "datetime",
    "float": "double",
    "int": "long",
    "string": "string",
}


class ScoringInputError(AirflowFailException):
    """The data cannot be scored by the model (bad columns or types): retrying will not help."""


# ---------------------------------------------------------------- models


def resolve_models(name: str | None = None) -> dict | None:
    """The versions behind the aliases, e.g. {"model_name": "rain_in_4h", "champion": "3",
    "challenger": "4"}; challenger is None when absent or the same version as the champion.
    None when there is no champion (nothing may be served). A registry that cannot answer
    raises registry.RegistryUnavailable (the task fails and retries; see mlops.io.registry)."""
    from mlops.io import registry

    name = name or get_config().model.registered_name
    held = registry.aliases(name)
    champion = held.get(CHAMPION)
    if champion is None:
        return None
    challenger = held.get(CHALLENGER)
    if challenger == champion:
        challenger = None
    return {"model_name": name, CHAMPION: champion, CHALLENGER: challenger}


def model_uri(name: str, version: str) -> str:
    return f"models:/{name}/{version}"


@functools.lru_cache(maxsize=4)
def load_model(name: str, version: str):
    """(model, input spec) of one registered version, loaded once per process.

    The input spec is [(column, mlflow type name)] from the model's signature."""
    from mlops.io.connections import configure_mlflow

    mlflow = configure_mlflow()
    uri = model_uri(name, version)
    signature = mlflow.models.get_model_info(uri).signature
    model = mlflow.sklearn.load_model(uri)
    return model, input_spec(signature)


def input_spec(signature) -> list[tuple[str, str]]:
    """[(column, type)] the model takes; without a signature, the configured time column + features."""
    if signature is None or signature.inputs is None:
        dataset = get_config().dataset
        names = [dataset.time_column, *dataset.features]
        return [(n, _CONFIG_TO_SIGNATURE[dataset.columns[n].type]) for n in names]
    spec = []
    for col in signature.inputs.inputs:
        if getattr(col, "name", None) is None:
            raise ScoringInputError(
                "the model's signature has unnamed (tensor) inputs; batch scoring needs named columns"
            )
        spec.append((col.name, getattr(col.type, "name", str(col.type))))
    return spec


# ---------------------------------------------------------------- which batches


def _to_warehouse_time(value: str, what: str) -> str:
    import pandas as pd

    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ScoringInputError(f"param {what}={value!r} is not a timestamp: {exc}") from None
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.strftime(warehouse.TIMESTAMP_FORMAT)


def plan_batches(
    models: dict,
    batch_id: str | None = None,
    start: str | None = None,
    end: str | None = None,
) -> list[dict]:
    """The batches to score and, for each, the roles: [{"batch_id": ..., "roles": [...]}].

    batch_id: replay that batch (all roles, replacing what exists). start/end: backfill every
    batch with observations in [start, end) (whole batches: the batch is the unit of storage).
    Neither: every loaded batch missing predictions of the current versions.
    """
    roles = [role for role in ROLES if models.get(role)]
    if batch_id and (start or end):
        raise ScoringInputError("give either batch_id (replay) or start/end (backfill), not both")
    if batch_id:
        rows = int(warehouse.read_sql("scoring/batch_rows.sql", {"batch_id": batch_id})["n"].iloc[0])
        if rows == 0:
            raise ScoringInputError(f"batch_id {batch_id!r} has no observations in the warehouse")
        return [{"batch_id": batch_id, "roles": roles}]
    if start or end:
        lo = _to_warehouse_time(start, "start") if start else TIME_MIN
        hi = _to_warehouse_time(end, "end") if end else TIME_MAX
        if lo >= hi:
            raise ScoringInputError(f"empty time range: start {start!r} is not before end {end!r}")
        found = warehouse.read_sql("scoring/batches_in_range.sql", {"start": lo, "end": hi})
        return [{"batch_id": b, "roles": roles} for b in found["batch_id"]]
    state = warehouse.read_sql(
        "scoring/loaded_batches.sql",
        {
            "model_name": models["model_name"],
            "champion_version": models[CHAMPION],
            "challenger_version": models.get(CHALLENGER) or "",
        },
    )
    plan = []
    for row in state.itertuples(index=False):
        missing = [role for role in roles if not int(getattr(row, f"has_{role}"))]
        if missing:
            plan.append({"batch_id": row.batch_id, "roles": missing})
    return plan


# ---------------------------------------------------------------- checking and scoring


def coerce_to_spec(frame, spec: list[tuple[str, str]], what: str):
    """The model's input frame: columns in signature order, converted to the signature's types.

    Raises ScoringInputError naming every column that is missing or holds values of another type."""
    import pandas as pd

    missing = [name for name, _ in spec if name not in frame.columns]
    problems = [f"missing columns {missing}"] if missing else []
    out = {}
    for name, kind in spec:
        if name in missing:
            continue
        col = frame[name]
        if kind == "datetime":
            conv = (
                col
                if pd.api.types.is_datetime64_any_dtype(col)
                else pd.to_datetime(col, format=warehouse.TIMESTAMP_FORMAT, errors="coerce")
            )
        elif kind in _NUMERIC:
            conv = (
                col
                if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
                else pd.to_numeric(col, errors="coerce")
            )
            if kind in ("long", "integer"):
                fractional = conv.notna() & (conv % 1 != 0)
                if fractional.any():
                    problems.append(
                        f"column {name!r} expects {kind}, found fractions like {_examples(col[fractional])}"
                    )
                    continue
                if not conv.isna().any():
                    conv = conv.astype("int64")
            else:
                conv = conv.astype("float64")
        elif kind == "string":
            conv = col
            wrong = col.notna() & ~col.map(lambda v: isinstance(v, str))
            if wrong.any():
                problems.append(f"column {name!r} expects string, found {_examples(col[wrong])}")
                continue
        else:
            problems.append(f"column {name!r} has signature type {kind}, which batch scoring does not handle")
            continue
        bad = conv.isna() & col.notna()
        if bad.any():
            problems.append(f"column {name!r} expects {kind}, found values like {_examples(col[bad])}")
            continue
        out[name] = conv
    if problems:
        raise ScoringInputError(f"{what} does not match the model's signature: " + "; ".join(problems))
    return pd.DataFrame(out, index=frame.index)


def _examples(values, n: int = 3) -> list:
    return [v for v in values.drop_duplicates().head(n).tolist()]


def predictions_key(model_name: str, model_version: str, role: str, batch_id: str) -> str:
    """Object key of a batch's predictions by one model version in one role (Hive-style partitions)."""
    prefix = get_config().storage.predictions_prefix
    parts = {
        "model_name": model_name,
        "model_version": model_version,
        "role": role,
        "batch_id": batch_id,
    }
    return prefix + "".join(f"{k}={url_quote(str(v), safe='')}/" for k, v in parts.items()) + PART_FILE


def _parquet_schema(time_column: str):
    import pyarrow as pa

    return pa.schema(
        [
            ("batch_id", pa.string()),
            (time_column, pa.timestamp("s", tz="UTC")),
            ("model_name", pa.string()),
            ("model_version", pa.string()),
            ("role", pa.string()),
            ("probability", pa.float64()),
            ("predicted_label", pa.int8()),
            ("threshold", pa.float64()),
            ("scored_at", pa.timestamp("s", tz="UTC")),
        ]
    )


def _compile_sql(conn, sql_name: str, **context):
    """(SQL in the driver's own parameter style, parameter order or None) of a query file.

    Bulk reads and writes go through the DB-API cursor: SQLAlchemy's per-row work would cost
    more than scoring itself. The SQL is still rendered and compiled for whichever dialect."""
    sql = warehouse.render_sql(sql_name, **context)
    key = (conn.dialect.name, conn.dialect.paramstyle, sql)
    if key not in _COMPILED:  # compiling costs more than a small batch's query
        import sqlalchemy as sa

        compiled = sa.text(sql).compile(dialect=conn.dialect)
        _COMPILED[key] = (compiled.string, compiled.positiontup)
    return _COMPILED[key]


_COMPILED: dict[tuple, tuple] = {}


def _bind(order, params: dict):
    return tuple(params[name] for name in order) if order is not None else params


def _observation_columns(conn) -> set[str]:
    import sqlalchemy as sa

    return {c["name"] for c in sa.inspect(conn).get_columns("observations")}


def load_scorers(models: dict, roles: list[str], batch_label: str = "the run") -> dict:
    """{role: (version, model, input spec)} of the roles whose versions exist, each model loaded
    once per process (load_model). A champion needing a column the observations table lacks
    raises ScoringInputError; a challenger that does is left out with a warning (a shadow
    model must never block the served predictions)."""
    name = models["model_name"]
    warehouse.ensure_schema()
    with warehouse.engine().connect() as probe:
        available = _observation_columns(probe)
    scorers = {}
    for role in [r for r in ROLES if r in roles and models.get(r)]:
        version = models[role]
        model, spec = load_model(name, version)
        absent = [col for col, _ in spec if col not in available]
        if absent:
            message = (
                f"{batch_label}: the observations table has no columns {absent}, which model "
                f"{name} version {version} ({role}) takes"
            )
            if role == CHAMPION:
                raise ScoringInputError(message)
            log.warning("%s; skipping the %s", message, role)
            continue
        scorers[role] = (version, model, spec)
    return scorers


def score_batch(
    batch_id: str,
    models: dict,
    roles: list[str] | None = None,
    chunk_rows: int | None = None,
) -> dict:
    """Score one batch with each role's model version and replace its stored predictions.

    Returns a small summary (rows, versions, object keys) for XCom and the log."""
    scorers = load_scorers(models, roles or list(ROLES), f"batch {batch_id!r}")
    if not scorers:
        return {"batch_id": batch_id, "model_name": models["model_name"], "rows": 0, "outputs": []}
    return score_with(batch_id, models["model_name"], scorers, chunk_rows)


class Clients(NamedTuple):
    """The warehouse engine and the S3 client, made once per group of batches: each costs a
    connection lookup and a client (or pool) build, more than scoring a small batch."""

    engine: object
    s3: object


def open_clients() -> Clients:
    """A new warehouse engine and S3 client, from the Airflow connections."""
    from mlops.io.connections import s3_client

    return Clients(warehouse.engine(), s3_client())


def score_with(
    batch_id: str,
    name: str,
    scorers: dict,
    chunk_rows: int | None = None,
    clients: Clients | None = None,
    published: list | None = None,
    frames=None,
) -> dict:
    """Score the batch with every role's loaded model and replace its stored predictions.
    scorers: {role: (version, model, input spec)}.

    Order, so that no reader ever sees a half state: (1) read and predict, outside any write
    transaction, into local Parquet files; (2) upload them to staging keys; (3) one short
    transaction deletes the old rows and inserts the new; (4) only after the commit the staged
    objects are copied to their final keys. A kill before (3) leaves staging objects only
    (remove_staging deletes them at the next run); a kill between (3) and (4) leaves rows whose
    Parquet file is missing or older, which the task's retry rewrites. `published`: a list that
    receives the staging keys once copied, for the caller to delete in bulk (without it each is
    deleted at once). `frames`: the batch's chunks as _read_chunks yields them, when the caller
    has started reading it already (default: read here)."""
    chunk_rows = int(chunk_rows or get_config().scoring.chunk_rows)
    constants = _constants(batch_id, name)
    clients = clients or open_clients()
    if frames is None:
        frames = _read_chunks(batch_id, _selected_columns(scorers), chunk_rows, clients.engine)
    with tempfile.TemporaryDirectory(prefix="batch_score-") as tmp:
        files = {role: Path(tmp) / f"{role}.parquet" for role in scorers}
        with contextlib.closing(_read_ahead(frames)) as chunks:
            rows_total = _predict_to_files(batch_id, scorers, files, constants, chunks)
        return _commit_and_publish(files, rows_total, scorers, constants, chunk_rows, clients, published)


def _constants(batch_id: str, name: str) -> dict:
    """The values every prediction row of one scoring of a batch shares (scored_at: now, seconds)."""
    scored_at = datetime.now(UTC).replace(microsecond=0)
    return {"batch_id": batch_id, "model_name": name, "scored_at": scored_at}


def _commit_and_publish(
    files: dict, rows_total: int, scorers: dict, constants: dict, chunk_rows: int, clients: Clients, published
) -> dict:
    """Steps (2) to (4) of score_with for the batch's predictions in local Parquet `files`
    ({role: path}): stage, swap the rows in (one transaction), publish. Its summary."""
    batch_id, name = constants["batch_id"], constants["model_name"]
    staged = _stage(files, name, scorers, batch_id, clients.s3)
    crash_point("scoring_staged")
    _swap_rows_in(files, scorers, constants, chunk_rows, clients.engine)
    crash_point("scoring_rows_committed")
    for role, (version, _, _) in scorers.items():
        _publish(staged[role], predictions_key(name, version, role, batch_id), clients.s3, published)
    return _summary(constants, scorers, rows_total)


def _summary(constants: dict, scorers: dict, rows_total: int) -> dict:
    """What a scored batch reports (rows, versions, object URIs) for XCom and the log."""
    batch_id, name = constants["batch_id"], constants["model_name"]
    bucket = get_config().storage.bucket
    outputs = [
        {
            "role": role,
            "model_version": version,
            "rows": rows_total,
            "uri": f"s3://{bucket}/{predictions_key(name, version, role, batch_id)}",
        }
        for role, (version, _, _) in scorers.items()
    ]
    if rows_total == 0:
        log.info("batch %r has no observations: nothing scored", batch_id)
    text = constants["scored_at"].strftime(warehouse.TIMESTAMP_FORMAT)
    return {"batch_id": batch_id, "model_name": name, "rows": rows_total, "scored_at": text, "outputs": outputs}


def _selected_columns(scorers: dict) -> list[str]:
    """The observation columns to read: the time column, then every role's inputs, once each."""
    time_col = get_config().dataset.time_column
    return list(dict.fromkeys([time_col, *(col for _, _, spec in scorers.values() for col, _ in spec)]))


def _read_chunks(batch_id: str, selected: list[str], chunk_rows: int, engine):
    """The batch's observations as DataFrames of at most chunk_rows rows, in time order (keyset
    pagination on the time column within the batch's recorded span), the time column parsed to
    datetime64. A read-only connection: no write lock is held while the models predict."""
    import pandas as pd

    time_col = get_config().dataset.time_column
    with engine.connect() as conn:
        cursor = conn.connection.cursor()
        span_sql, span_order = _compile_sql(conn, "scoring/batch_span.sql")
        cursor.execute(span_sql, _bind(span_order, {"batch_id": batch_id}))
        after, last_time = cursor.fetchone() or ("", "~")  # not in batches: every time
        first = True
        while True:
            chunk_sql, chunk_order = _compile_sql(conn, "scoring/observation_chunk.sql", selected=selected, first=first)
            params = {"batch_id": batch_id, "after": after, "last": last_time, "limit": chunk_rows}
            cursor.execute(chunk_sql, _bind(chunk_order, params))
            first = False
            records = cursor.fetchall()
            if not records:
                return
            frame = pd.DataFrame.from_records(records, columns=selected)
            short = len(records) < chunk_rows  # a short chunk is the last: no query for an empty one
            del records
            after = frame[time_col].iloc[-1]
            frame[time_col] = pd.to_datetime(frame[time_col], format=warehouse.TIMESTAMP_FORMAT)
            yield frame
            if short:
                return


def _read_ahead(frames):
    """`frames` (an iterator of chunks), each next chunk read in a thread while the caller works on
    the current one: the warehouse read (driver fetch, DataFrame build) overlaps predict_proba,
    which releases the GIL. One chunk ahead at most, so memory stays flat. The iterator runs in
    that thread while this generator runs, and is closed here after the last read ended (a
    connection used by one thread at a time). Close this generator (contextlib.closing) rather
    than leave it to the garbage collector."""
    with ThreadPoolExecutor(1, thread_name_prefix="scoring-read") as reader:
        pending = reader.submit(next, frames, None)
        try:
            while (frame := pending.result()) is not None:
                pending = reader.submit(next, frames, None)
                yield frame
        finally:
            pending.cancel()
            futures_wait([pending])  # a read under way ends before the iterator is closed
            if hasattr(frames, "close"):  # here, not in the reader: at garbage collection it may be gone
                frames.close()


IDS_PER_QUERY = 500  # batch ids bound in one IN list (SQLite allows 32,766 variables, old builds 999)


def _sizes_of(batch_ids: list[str], engine) -> dict[str, int]:
    """Observations of each batch in `batch_ids`: {batch_id: rows} (absent batches: no entry)."""
    sizes = {}
    with engine.connect() as conn:
        cursor = conn.connection.cursor()
        for start in range(0, len(batch_ids), IDS_PER_QUERY):
            ids = batch_ids[start : start + IDS_PER_QUERY]
            sql, order = _compile_sql(conn, "scoring/sizes_of_batches.sql", count=len(ids))
            cursor.execute(sql, _bind(order, {f"b{i}": b for i, b in enumerate(ids)}))
            sizes |= {batch_id: int(n) for batch_id, n in cursor.fetchall()}
    return sizes


def _read_batches(batch_ids: list[str], selected: list[str], engine):
    """The observations of several batches read in one query: (one DataFrame of their rows, in the
    order of batch_ids and, within a batch, in time order, the time column parsed; [rows of each
    batch]). For small batches only: all rows are held in memory. Raises LookupError when a batch
    has no rows (it goes the way of a lone batch instead)."""
    import numpy as np
    import pandas as pd

    time_col = get_config().dataset.time_column
    with engine.connect() as conn:
        sql, order = _compile_sql(conn, "scoring/observations_of_batches.sql", count=len(batch_ids), selected=selected)
        cursor = conn.connection.cursor()
        cursor.execute(sql, _bind(order, {f"b{i}": b for i, b in enumerate(batch_ids)}))
        frame = pd.DataFrame.from_records(cursor.fetchall(), columns=[_BATCH_COLUMN, *selected])
    bounds = frame.groupby(_BATCH_COLUMN, sort=False).indices  # rows come sorted by batch id
    missing = [b for b in batch_ids if b not in bounds]
    if missing:
        raise LookupError(f"batches {missing} have no observations")
    frame = frame.take(np.concatenate([bounds[b] for b in batch_ids])).reset_index(drop=True)
    frame[time_col] = pd.to_datetime(frame[time_col], format=warehouse.TIMESTAMP_FORMAT)
    return frame, [len(bounds[b]) for b in batch_ids]


_BATCH_COLUMN = "\x00batch_id"  # the batch id column of _read_batches (no clash with a feature)


def _predict_to_files(batch_id: str, scorers: dict, files: dict, constants: dict, frames) -> int:
    """Predict every chunk of `frames` with every role's model and append the predictions to the
    role's local Parquet file (the final file's schema). Returns the number of rows scored."""
    import pyarrow.parquet as pq

    schema = _parquet_schema(get_config().dataset.time_column)
    writers = {role: pq.ParquetWriter(files[role], schema) for role in scorers}
    rows_total = 0
    try:
        for frame in frames:
            for role, (version, model, spec) in scorers.items():
                x = coerce_to_spec(frame, spec, f"batch {batch_id!r} (rows after {rows_total})")
                probability = model.predict_proba(x)[:, 1].astype("float64")
                writers[role].write_table(_prediction_table(constants, version, role, frame, probability, schema))
            rows_total += len(frame)
    finally:
        for writer in writers.values():
            writer.close()
    return rows_total


def _prediction_table(constants: dict, version: str, role: str, frame, probability, schema):
    """One role's predictions of `frame`'s rows (probability: float64 array, same length) as a
    pyarrow Table of the Parquet schema; the label is probability >= the decision threshold.
    constants["batch_id"]: the batch's id, or a sequence of each row's batch id."""
    import pyarrow as pa

    time_col = get_config().dataset.time_column
    threshold = float(get_config().model.decision_threshold)
    n = len(probability)
    times = pa.array(frame[time_col].to_numpy()).cast(schema.field(time_col).type)
    scored_at = pa.scalar(constants["scored_at"], type=schema.field("scored_at").type)
    label = (probability >= threshold).astype("int8")
    batch = constants["batch_id"]  # one batch's id, or an array of each row's (several batches)
    batch = pa.repeat(batch, n) if isinstance(batch, str) else pa.array(batch, pa.string())
    columns = [batch, times, pa.repeat(constants["model_name"], n)]
    columns += [pa.repeat(version, n), pa.repeat(role, n), pa.array(probability), pa.array(label)]
    columns += [pa.repeat(threshold, n), pa.repeat(scored_at, n)]
    return pa.table(columns, schema=schema)


def _staging_prefix() -> str:
    return f"{get_config().storage.predictions_prefix}_staging/"


def _stage(files: dict, name: str, scorers: dict, batch_id: str, s3) -> dict:
    """Upload each role's Parquet file to a staging key of its own: {role: staged key}. Small
    files in one PUT (upload_file's transfer manager starts threads, costly per small batch)."""
    cfg = get_config()
    attempt = f"{_staging_prefix()}{uuid.uuid4().hex}/"
    staged = {}
    for role, (version, _, _) in scorers.items():
        final_key = predictions_key(name, version, role, batch_id)
        staged[role] = attempt + final_key[len(cfg.storage.predictions_prefix) :]
        if files[role].stat().st_size < SINGLE_PUT_BYTES:
            s3.put_object(Bucket=cfg.storage.bucket, Key=staged[role], Body=files[role].read_bytes())
        else:
            s3.upload_file(str(files[role]), cfg.storage.bucket, staged[role])
    return staged


def _publish(staged_key: str, final_key: str, s3, published: list | None = None) -> str:
    """Copy a staged object to its final key (the rows are committed by now), then drop the stage
    (or add it to `published`, for _delete_staged)."""
    bucket = get_config().storage.bucket
    s3.copy_object(Bucket=bucket, Key=final_key, CopySource={"Bucket": bucket, "Key": staged_key})
    if published is None:
        s3.delete_object(Bucket=bucket, Key=staged_key)
    else:
        published.append(staged_key)
    return final_key


def _delete_staged(keys: list[str], s3) -> None:
    """Delete published staging objects, 1,000 per request. A failure only logs: the next run's
    remove_staging deletes what is left."""
    bucket = get_config().storage.bucket
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        try:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})
        except Exception:  # noqa: BLE001 - leftovers are removed by the next run
            log.warning("could not delete %d published staging object(s); the next run removes them", len(chunk))


def _swap_rows_in(files: dict, scorers: dict, constants: dict, chunk_rows: int, engine) -> None:
    """_swap_in of one batch whose predictions are in local Parquet files ({role: path}), read
    back chunk by chunk. No predicting or uploading happens inside the transaction."""
    import pyarrow.parquet as pq

    def chunks(role: str):
        return pq.ParquetFile(files[role]).iter_batches(batch_size=chunk_rows)

    _swap_in([constants["batch_id"]], constants["model_name"], scorers, chunks, engine)


def _swap_group_in(tables: dict, batch_ids: list[str], name: str, scorers: dict, engine) -> None:
    """_swap_in of several batches (`tables`: {role: pyarrow Table of the Parquet schema holding
    exactly the rows of `batch_ids`}): a group of small batches pays one commit."""
    _swap_in(batch_ids, name, scorers, lambda role: [tables[role]], engine)


def _swap_in(batch_ids: list[str], name: str, scorers: dict, chunks_of, engine) -> None:
    """One transaction: delete the batches' rows of each (version, role), then insert the role's
    predictions, `chunks_of(role)` (pyarrow Tables or RecordBatches of the Parquet schema), with
    warehouse.bulk_insert (COPY on PostgreSQL)."""
    with engine.begin() as conn:
        delete_sql, delete_order = _compile_sql(conn, "scoring/delete_predictions.sql")
        cursor = conn.connection.cursor()
        for role, (version, _, _) in scorers.items():
            keys = [{"batch_id": b, "model_name": name, "model_version": version, "role": role} for b in batch_ids]
            cursor.executemany(delete_sql, [_bind(delete_order, k) for k in keys])
            for chunk in chunks_of(role):
                warehouse.bulk_insert(conn, "predictions", _as_warehouse_rows(chunk))


def _as_warehouse_rows(rows):
    """Predictions of the Parquet schema (Table or RecordBatch) as the warehouse stores them: the
    time column and scored_at as TIMESTAMP_FORMAT text (a cast: pc.strftime costs ~1 s per 1M rows)."""
    for column in (get_config().dataset.time_column, "scored_at"):
        index = rows.schema.get_field_index(column)
        rows = rows.set_column(index, column, time_text(rows.column(index)))
    return rows


def time_text(times):
    """Arrow timestamps (any unit, naive or UTC, whole seconds) as TIMESTAMP_FORMAT text, e.g.
    "2016-10-01 00:00:00": a cast to naive seconds, then Arrow's own text of them, which is that
    format (same text as pc.strftime with TIMESTAMP_FORMAT, ~10x faster). Raises
    pyarrow.ArrowInvalid on fractions of a second (they would be lost)."""
    import pyarrow as pa

    return times.cast(pa.timestamp("s", tz=times.type.tz)).cast(pa.timestamp("s")).cast(pa.string())


def remove_staging(before: datetime) -> int:
    """Delete staging objects of predictions last modified before `before` (aware datetime): left
    by attempts killed between staging and publishing. batch_score calls it with its run's start
    (one run at a time, so no live attempt has such objects). Returns how many were deleted."""
    from mlops.io.connections import s3_client

    s3, bucket = s3_client(), get_config().storage.bucket
    stale = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=_staging_prefix()):
        stale += [o["Key"] for o in page.get("Contents", []) if o["LastModified"] < before]
    for start in range(0, len(stale), 1000):  # delete_objects takes at most 1000 keys
        chunk = stale[start : start + 1000]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})
    if stale:
        log.info("removed %d staging object(s) left by killed scoring attempts", len(stale))
    return len(stale)


# ---------------------------------------------------------------- groups of batches


def plan_groups(batches: list[dict], sizes: dict[str, int], parallel: int, rows_per_group: int) -> list[dict]:
    """Split planned batches into score tasks: [{"label": ..., "batches": [...]}].

    As many groups as the rows need (ceil(total rows / rows_per_group), at least one), at most
    `parallel` and at most one per batch. Batches go largest first to the group with the fewest
    rows so far (longest-processing-time rule, Graham 1969: within 4/3 of the best makespan);
    each group keeps the plan's order. sizes: rows per batch_id (missing -> 0)."""
    if not batches:
        return []
    rows = [max(int(sizes.get(b["batch_id"], 0)), 0) for b in batches]
    wanted = -(-sum(rows) // max(rows_per_group, 1))
    count = max(1, min(parallel, len(batches), wanted))
    loads, members = [0] * count, [[] for _ in range(count)]
    for index in sorted(range(len(batches)), key=lambda i: -rows[i]):
        # Fewest rows, then fewest batches: empty-row batches do not leave a group without any.
        target = min(range(count), key=lambda g: (loads[g], len(members[g])))
        loads[target] += rows[index]
        members[target].append(index)
    groups = []
    for indices in members:
        chosen = [batches[i] for i in sorted(indices)]
        first, last = chosen[0]["batch_id"], chosen[-1]["batch_id"]
        label = first if len(chosen) == 1 else f"{len(chosen)} batches {first} .. {last}"
        groups.append({"label": label, "batches": chosen})
    return groups


def batch_sizes() -> dict[str, int]:
    """Observations per batch in the warehouse: {batch_id: rows}."""
    sizes = warehouse.read_sql("scoring/batch_sizes.sql")
    return dict(zip(sizes["batch_id"], sizes["n"].astype(int), strict=True))


def _done_since(batch_id: str, name: str, version: str, role: str, since: str, s3) -> bool:
    """True if this batch's predictions by (version, role) were all written at or after `since`
    (warehouse time text) and their Parquet file is in place: an earlier attempt of this run
    finished it."""
    from botocore.exceptions import ClientError

    params = {"batch_id": batch_id, "model_name": name, "model_version": version, "role": role}
    found = warehouse.read_sql("scoring/scored_since.sql", params).iloc[0]
    if int(found["n"]) == 0 or str(found["first_scored"]) < since:
        return False
    try:
        s3.head_object(Bucket=get_config().storage.bucket, Key=predictions_key(name, version, role, batch_id))
    except ClientError:
        return False
    return True


def score_batches(
    batches: list[dict],
    name: str,
    scorers: dict,
    since: str | None = None,
    chunk_rows: int | None = None,
    clients: Clients | None = None,
) -> tuple[list[dict], dict]:
    """Score `batches` ([{"batch_id", "roles"}]) in order with the loaded `scorers`: (summaries of
    the batches scored, {batch_id: exception} of those that failed). A batch and role done at or
    after `since` (see score_group) is skipped. Batches of fewer than chunk_rows rows are read,
    predicted and committed together (see _GroupScoring); a larger one streams on its own."""
    clients = clients or open_clients()
    todo = []
    for batch in batches:
        batch_id = batch["batch_id"]
        wanted = {r: s for r, s in scorers.items() if r in batch["roles"]}
        if since:
            wanted = {r: s for r, s in wanted.items() if not _done_since(batch_id, name, s[0], r, since, clients.s3)}
        if wanted:
            todo.append((batch_id, wanted))
    try:  # one query for all sizes; a lone batch streams whatever its size
        sizes = _sizes_of([b for b, _ in todo], clients.engine) if len(todo) > 1 else {}
    except Exception:  # noqa: BLE001 - each batch then goes alone, with its own errors
        log.warning("could not count the group's batches; scoring them one by one", exc_info=True)
        sizes = {}
    with ThreadPoolExecutor(S3_THREADS, thread_name_prefix="scoring-s3") as s3_calls:
        group = _GroupScoring(name, int(chunk_rows or get_config().scoring.chunk_rows), clients, s3_calls)
        for batch_id, wanted in todo:
            group.add(batch_id, wanted, sizes.get(batch_id, 0))
        group.flush()
        group.drain()
    _delete_staged(group.published, clients.s3)  # one request for the group, not one per batch
    return group.summaries, group.failures


class _GroupScoring:
    """Scores a group's batches in the order added.

    Batches of fewer than chunk_rows rows are held (at most chunk_rows rows and IDS_PER_QUERY
    batches in all, the same models), then read in one query, predicted with one predict_proba per
    role (each call costs milliseconds of overhead, more than a small batch's rows take), and
    their rows swapped in with one transaction. Only after that commit is each batch's Parquet
    file written and PUT to its final key (in threads, while the next held batches are read and
    predicted): a file is never visible before its rows, and a kill before the commit leaves
    nothing. A small file needs no staging: one PUT after the commit costs what the copy of a
    staged object would. A larger batch streams through score_with (staged, then copied).

    A failing batch is recorded in `failures`, the others go on: if the held batches fail together
    (reading, predicting, committing), each is done alone again."""

    def __init__(self, name: str, chunk_rows: int, clients: Clients, s3_calls: ThreadPoolExecutor):
        self.name, self.chunk_rows, self.clients, self.s3_calls = name, chunk_rows, clients, s3_calls
        self.summaries: list[dict] = []
        self.failures: dict = {}
        self.published: list[str] = []  # staging keys copied into place (by score_with)
        self.publishing: list[tuple] = []  # (batch_id, summary work, PUT futures), in order
        self.held: list[str] = []  # small batches not yet read
        self.held_rows = 0
        self.held_scorers: dict | None = None

    def add(self, batch_id: str, scorers: dict, rows: int) -> None:
        """Hold the batch if it is small (rows: its count, 0 if unknown), else score it now (after
        the held ones)."""
        small = 0 < rows < self.chunk_rows
        full = self.held_rows + rows > self.chunk_rows or len(self.held) >= IDS_PER_QUERY
        if not small or scorers != self.held_scorers or full:
            self.flush()
        if small:
            self.held.append(batch_id)
            self.held_rows += rows
            self.held_scorers = scorers
            return
        self._alone(batch_id, scorers)

    def _alone(self, batch_id: str, scorers: dict) -> None:
        self.drain()  # summaries stay in the order added
        self._run(
            batch_id, lambda: score_with(batch_id, self.name, scorers, self.chunk_rows, self.clients, self.published)
        )

    def flush(self) -> None:
        """Read, predict and commit the held batches together, then start their PUTs; if reading or
        predicting them together fails (e.g. one batch breaks the signature), each is scored alone
        instead, so the error names its batch and the others are scored."""
        held, scorers = self.held, self.held_scorers
        self.held, self.held_rows, self.held_scorers = [], 0, None
        if not held:
            return
        try:
            frame, counts = _read_batches(held, _selected_columns(scorers), self.clients.engine)
            probabilities = _predict_rows(frame, scorers, f"{len(held)} batches predicted together")
        except Exception:  # noqa: BLE001 - each batch again on its own, with its own error
            log.warning("scoring %d batches together failed; scoring them one by one", len(held), exc_info=True)
            for batch_id in held:
                self._alone(batch_id, scorers)
            return
        parts = self._tables_of_each(held, counts, frame, probabilities, scorers)
        of_batch = {batch_id: (tables, constants, rows) for batch_id, tables, constants, rows in parts}
        for batch_id in self._commit(parts, scorers):
            tables, constants, rows = of_batch[batch_id]
            puts = [
                self.s3_calls.submit(
                    _put_parquet, tables[role], predictions_key(self.name, version, role, batch_id), self.clients.s3
                )
                for role, (version, _, _) in scorers.items()
            ]
            self.publishing.append((batch_id, functools.partial(_summary, constants, scorers, rows), puts))

    def _tables_of_each(self, held: list, counts: list, frame, probabilities: dict, scorers: dict) -> list:
        """[(batch_id, {role: its predictions as a Parquet-schema Table}, constants, rows)] of the
        held batches: one table per role for all their rows, sliced per batch (no copies)."""
        import numpy as np

        constants = _constants(None, self.name)  # one scored_at: they are committed together
        schema = _parquet_schema(get_config().dataset.time_column)
        batch_column = np.repeat(np.array(held, dtype=object), counts)
        tables = {
            role: _prediction_table(
                constants | {"batch_id": batch_column}, version, role, frame, probabilities[role], schema
            )
            for role, (version, _, _) in scorers.items()
        }
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        return [
            (b, {r: t.slice(int(o), n) for r, t in tables.items()}, constants | {"batch_id": b}, n)
            for b, o, n in zip(held, starts, counts, strict=True)
        ]

    def _commit(self, parts: list, scorers: dict) -> list[str]:
        """Swap the batches' rows in, all in one transaction; if that fails, each batch in a
        transaction of its own (a failing one is recorded). The batch ids committed."""
        import pyarrow as pa

        ids = [b for b, _, _, _ in parts]
        crash_point("scoring_group_predicted")
        try:
            tables = {role: pa.concat_tables([t[role] for _, t, _, _ in parts]) for role in scorers}
            _swap_group_in(tables, ids, self.name, scorers, self.clients.engine)
            committed = ids
        except Exception:  # noqa: BLE001 - each batch in its own transaction, with its own error
            log.warning("committing %d batches together failed; committing them one by one", len(ids), exc_info=True)
            committed = []
            for batch_id, tables, _, _ in parts:
                try:
                    _swap_group_in(tables, [batch_id], self.name, scorers, self.clients.engine)
                    committed.append(batch_id)
                except Exception as exc:  # noqa: BLE001 - recorded, the group goes on
                    self._failed(batch_id, exc)
        crash_point("scoring_group_committed")
        return committed

    def drain(self) -> None:
        """Wait for the PUTs started so far; each batch whose files are all in place gets its
        summary, in the order added (a failed PUT is the batch's failure: the retry rescores it)."""
        publishing, self.publishing = self.publishing, []
        for batch_id, summary, puts in publishing:
            self._run(batch_id, functools.partial(_after, puts, summary))

    def _run(self, batch_id: str, work) -> None:
        try:
            self.summaries.append(work())
        except Exception as exc:  # noqa: BLE001 - recorded, the group goes on, the task fails at the end
            self._failed(batch_id, exc)

    def _failed(self, batch_id: str, exc: Exception) -> None:
        log.error("batch %r failed; the group goes on", batch_id, exc_info=exc)
        self.failures[batch_id] = exc


def _after(futures: list, work):
    """work() once every future has finished (the first failure raises instead)."""
    for future in futures:
        future.result()
    return work()


def _put_parquet(table, key: str, s3) -> str:
    """Write `table` as Parquet in memory and PUT it to `key` (one request: a small batch's file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    s3.put_object(Bucket=get_config().storage.bucket, Key=key, Body=sink.getvalue().to_pybytes())
    return key


def _predict_rows(rows, scorers: dict, what: str) -> dict:
    """Each role's predict_proba of `rows` (a DataFrame holding every role's input columns):
    {role: probability (float64 array)}. Raises ScoringInputError (naming `what`) if the rows
    break a role's signature."""
    predicted = {}
    for role, (_, model, spec) in scorers.items():
        x = coerce_to_spec(rows, spec, what)
        predicted[role] = model.predict_proba(x)[:, 1].astype("float64")
    return predicted


def predict_together(frames: list, scorers: dict) -> list[dict]:
    """Each role's predictions of several batches' observations with one predict_proba call on
    all their rows: [{role: probability (float64 array)}], one per frame, in order.

    frames: DataFrames as _read_chunks yields them (the same rows as scoring each alone: the
    models predict row by row). Raises ScoringInputError if the rows break a role's signature."""
    import numpy as np
    import pandas as pd

    rows = pd.concat(frames, ignore_index=True)
    bounds = np.cumsum([len(frame) for frame in frames])[:-1]
    predicted = [{} for _ in frames]
    for role, probability in _predict_rows(rows, scorers, f"{len(frames)} batches predicted together").items():
        for one, part in zip(predicted, np.split(probability, bounds), strict=True):
            one[role] = part
    return predicted


def score_group(group: dict, models: dict, since: str | None = None, chunk_rows: int | None = None) -> dict:
    """Score a group's batches in order, each model loaded once, each batch committed on its own.

    since: the run's start (warehouse time text); a batch and role already scored at or after it
    (by an earlier attempt of this task) is skipped. A failing batch is recorded and the others
    go on; at the end the task fails if any did: with ScoringInputError (no retry) when every
    failure was bad input, otherwise with RuntimeError, so that Airflow retries the group."""
    name = models["model_name"]
    wanted = sorted({role for batch in group["batches"] for role in batch["roles"]}, key=ROLES.index)
    scorers = load_scorers(models, wanted)
    summaries, failures = score_batches(group["batches"], name, scorers, since, chunk_rows)
    summary = {
        "model_name": name,
        "batches": [s["batch_id"] for s in summaries],
        "rows": sum(s["rows"] for s in summaries),
        "outputs": [o | {"batch_id": s["batch_id"]} for s in summaries for o in s["outputs"]],
    }
    if failures:
        detail = "; ".join(f"{b}: {e}" for b, e in failures.items())
        message = f"{len(failures)} of {len(group['batches'])} batch(es) failed ({detail}); the others were scored"
        if all(isinstance(e, ScoringInputError) for e in failures.values()):
            raise ScoringInputError(message)
        raise RuntimeError(message)
    return summary
