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

A batch is the unit of storage: its predictions by one model version in one role are
replaced as a whole (delete + insert in one transaction; the Parquet file is written to a
staging key and copied into place), so a rerun never duplicates rows. A new version gets
its own rows and its own Parquet key. Nothing is written when a chunk breaks the signature.
"""

from __future__ import annotations

import functools
import logging
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote as url_quote

from airflow.sdk.exceptions import AirflowFailException

from mlops.config import get_config
from mlops.io import warehouse
from mlops.io.registry import CHALLENGER, CHAMPION

log = logging.getLogger(__name__)

ROLES = (CHAMPION, CHALLENGER)
PART_FILE = "part-00000.parquet"
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


def _prepare(conn, sql_name: str, **context):
    """(SQL in the driver's own parameter style, parameter order or None) of a query file.

    Bulk reads and writes go through the DB-API cursor: SQLAlchemy's per-row work would cost
    more than scoring itself. The SQL is still rendered and compiled for whichever dialect."""
    import sqlalchemy as sa

    compiled = sa.text(warehouse.render_sql(sql_name, **context)).compile(dialect=conn.dialect)
    return compiled.string, compiled.positiontup


def _bind(order, params: dict):
    return tuple(params[name] for name in order) if order is not None else params


def _observation_columns(conn) -> set[str]:
    import sqlalchemy as sa

    return {c["name"] for c in sa.inspect(conn).get_columns("observations")}


def score_batch(
    batch_id: str,
    models: dict,
    roles: list[str] | None = None,
    chunk_rows: int | None = None,
) -> dict:
    """Score one batch with each role's model version and replace its stored predictions.

    Returns a small summary (rows, versions, object keys) for XCom and the log."""
    name = models["model_name"]
    roles = [r for r in ROLES if r in (roles or ROLES) and models.get(r)]
    warehouse.ensure_schema()
    engine = warehouse.engine()
    with engine.connect() as probe:
        available = _observation_columns(probe)
    scorers = {}
    for role in roles:
        version = models[role]
        model, spec = load_model(name, version)
        absent = [col for col, _ in spec if col not in available]
        if absent:
            message = (
                f"batch {batch_id!r}: the observations table has no columns {absent}, which model "
                f"{name} version {version} ({role}) takes"
            )
            if role == CHAMPION:
                raise ScoringInputError(message)
            # A shadow model must never block the served predictions.
            log.warning("%s; skipping the %s for this batch", message, role)
            continue
        scorers[role] = (version, model, spec)
    if not scorers:
        return {"batch_id": batch_id, "model_name": name, "rows": 0, "outputs": []}
    return score_with(batch_id, name, scorers, chunk_rows)


def score_with(batch_id: str, name: str, scorers: dict, chunk_rows: int | None = None) -> dict:
    """Stream the batch in chunks, score each chunk with every role's loaded model, and replace
    the batch's stored predictions. scorers: {role: (version, model, input spec)}."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlops.io.connections import s3_client

    cfg = get_config()
    time_col = cfg.dataset.time_column
    threshold = float(cfg.model.decision_threshold)
    chunk_rows = int(chunk_rows or cfg.scoring.chunk_rows)
    engine = warehouse.engine()

    selected = list(dict.fromkeys([time_col, *(col for _, _, spec in scorers.values() for col, _ in spec)]))
    scored_at = datetime.now(UTC).replace(microsecond=0)
    scored_at_text = scored_at.strftime(warehouse.TIMESTAMP_FORMAT)
    schema = _parquet_schema(time_col)
    s3 = s3_client()
    bucket = cfg.storage.bucket
    staging = f"{cfg.storage.predictions_prefix}_staging/{uuid.uuid4().hex}/"
    rows_total = 0
    outputs = []

    with (
        tempfile.TemporaryDirectory(prefix="batch_score-") as tmp,
        engine.begin() as conn,
    ):
        chunk_sql, chunk_order = _prepare(conn, "scoring/observation_chunk.sql", selected=selected)
        inserter = _PredictionInserter(conn)
        delete_sql, delete_order = _prepare(conn, "scoring/delete_predictions.sql")
        cursor = conn.connection.cursor()
        for role, (version, _, _) in scorers.items():
            cursor.execute(
                delete_sql,
                _bind(
                    delete_order,
                    {
                        "batch_id": batch_id,
                        "model_name": name,
                        "model_version": version,
                        "role": role,
                    },
                ),
            )
        writers = {role: pq.ParquetWriter(Path(tmp) / f"{role}.parquet", schema) for role in scorers}
        try:
            after = TIME_MIN
            while True:
                cursor.execute(
                    chunk_sql,
                    _bind(
                        chunk_order,
                        {"batch_id": batch_id, "after": after, "limit": chunk_rows},
                    ),
                )
                records = cursor.fetchall()
                if not records:
                    break
                frame = pd.DataFrame.from_records(records, columns=selected)
                del records
                after = frame[time_col].iloc[-1]
                times_text = frame[time_col].tolist()
                # Parsed once: the models get datetime64, the Parquet file a UTC timestamp.
                frame[time_col] = pd.to_datetime(frame[time_col], format=warehouse.TIMESTAMP_FORMAT)
                times = pa.array(frame[time_col].to_numpy()).cast(schema.field(time_col).type)
                for role, (version, model, spec) in scorers.items():
                    x = coerce_to_spec(frame, spec, f"batch {batch_id!r} (rows after {rows_total})")
                    probability = model.predict_proba(x)[:, 1].astype("float64")
                    label = (probability >= threshold).astype("int8")
                    n = len(probability)
                    inserter.insert(
                        cursor,
                        {
                            "batch_id": batch_id,
                            "model_name": name,
                            "model_version": version,
                            "role": role,
                            "threshold": threshold,
                            "scored_at": scored_at_text,
                        },
                        times_text,
                        probability.tolist(),
                        label.tolist(),
                    )
                    writers[role].write_table(
                        pa.table(
                            [
                                pa.repeat(batch_id, n),
                                times,
                                pa.repeat(name, n),
                                pa.repeat(version, n),
                                pa.repeat(role, n),
                                pa.array(probability),
                                pa.array(label),
                                pa.repeat(threshold, n),
                                pa.repeat(pa.scalar(scored_at, type=schema.field("scored_at").type), n),
                            ],
                            schema=schema,
                        )
                    )
                rows_total += len(frame)
        finally:
            for writer in writers.values():
                writer.close()
        # Every chunk passed and is in the open transaction: put the Parquet files in place,
        # then commit (leaving the `with`). Any failure before the commit rolls the rows back.
        for role, (version, _, _) in scorers.items():
            final_key = predictions_key(name, version, role, batch_id)
            staged_key = staging + final_key[len(cfg.storage.predictions_prefix) :]
            s3.upload_file(str(Path(tmp) / f"{role}.parquet"), bucket, staged_key)
            try:
                s3.copy_object(
                    Bucket=bucket,
                    Key=final_key,
                    CopySource={"Bucket": bucket, "Key": staged_key},
                )
            finally:
                s3.delete_object(Bucket=bucket, Key=staged_key)
            outputs.append(
                {
                    "role": role,
                    "model_version": version,
                    "rows": rows_total,
                    "uri": f"s3://{bucket}/{final_key}",
                }
            )
    if rows_total == 0:
        log.info("batch %r has no observations: nothing scored", batch_id)
    return {
        "batch_id": batch_id,
        "model_name": name,
        "rows": rows_total,
        "scored_at": scored_at_text,
        "outputs": outputs,
    }


class _PredictionInserter:
    """Inserts predictions ROWS_PER_STATEMENT rows per statement (insert_predictions.sql):
    the per-batch values are bound once per statement, each row binds three values."""

    ROWS_PER_STATEMENT = 300  # 906 parameters: under SQLite's historical limit of 999
    CONSTANTS = ("batch_id", "model_name", "model_version", "role", "threshold", "scored_at")

    def __init__(self, conn):
        self.conn = conn
        self.statements: dict[int, tuple[str, tuple | None, list[str]]] = {}

    def _statement(self, rows: int):
        if rows not in self.statements:
            sql, order = _prepare(self.conn, "scoring/insert_predictions.sql", rows=rows)
            names = [f"{kind}{i}" for i in range(rows) for kind in ("t", "p", "l")]
            if order is not None and tuple(order) != (*self.CONSTANTS, *names):
                raise RuntimeError("insert_predictions.sql: unexpected parameter order")
            self.statements[rows] = (sql, order, names)
        return self.statements[rows]

    def insert(self, cursor, constants: dict, times: list, probabilities: list, labels: list) -> None:
        step = self.ROWS_PER_STATEMENT
        head = tuple(constants[name] for name in self.CONSTANTS)
        for start in range(0, len(times), step):
            stop = min(start + step, len(times))
            sql, order, names = self._statement(stop - start)
            values = [None] * (3 * (stop - start))
            values[0::3], values[1::3], values[2::3] = times[start:stop], probabilities[start:stop], labels[start:stop]
            if order is not None:  # positional parameter style (SQLite)
                cursor.execute(sql, head + tuple(values))
            else:  # named parameter style (PostgreSQL)
                cursor.execute(sql, {**constants, **dict(zip(names, values, strict=True))})
