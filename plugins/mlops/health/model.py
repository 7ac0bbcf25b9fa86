"""What the "Model health" view shows, read from the warehouse, MLflow and the object store.

Everything here is read-only. The view is served by the plugin in plugins/model_health_plugin.py
(the FastAPI app is mlops.health.app, the HTML mlops.health.page):
  * models: the versions behind the `champion` and `challenger` aliases, their training window
    and holdout metrics beside the persistence and base-rate baselines (from the version's run);
  * decisions: rows of `model_decisions` (train's promote task and rollback_champion);
  * drift: rows of `drift_runs` (drifted features, realized against holdout metrics, reports);
  * batches: rows of `batches` (loaded, quarantined with reason, duplicate; reports);
  * freshness: when data last landed, was loaded, scored and checked, with ages.
Each section is gathered on its own: a service that is down blanks its section with the error,
not the page. Reports are served only from the configured reports and quarantine prefixes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import posixpath
from collections.abc import Callable, Iterator

from mlops.config import PipelineConfig, get_config
from mlops.io import warehouse
from mlops.io.registry import CHALLENGER, CHAMPION

log = logging.getLogger(__name__)

ALIASES = (CHAMPION, CHALLENGER)
# The files a report link may open: what ingest and drift_check write next to each other.
REPORT_FILES = {
    "report.html": "text/html; charset=utf-8",
    "validation.json": "application/json",
    "result.json": "application/json",
}
# Siblings shown beside a report_uri in the view (ingest writes validation.json, drift result.json).
SIBLINGS = {"batch": ("report.html", "validation.json"), "drift": ("report.html", "result.json")}
DEFAULT_LIMIT = 50
# Where the plugin mounts the view's FastAPI app in Airflow's API server.
VIEW_PREFIX = "/model-health"
MLFLOW_RETRIES, MLFLOW_TIMEOUT_SECONDS = 1, 10
CHUNK_BYTES = 64 * 1024


class ReportNotAllowed(ValueError):
    """A requested report key is outside the report prefixes or not a report file."""


# --------------------------------------------------------------------------- time


def parse_utc(text: str | None) -> dt.datetime | None:
    """A warehouse timestamp ('YYYY-MM-DD HH:MM:SS', UTC; ISO-8601 also accepted) as an aware datetime."""
    if not text:
        return None
    value = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def age_text(then: dt.datetime | None, now: dt.datetime) -> str:
    """'42 s', '5 min', '3 h 12 min', '4 d 2 h' between then and now; '' without a time."""
    if then is None:
        return ""
    seconds = int((now - then).total_seconds())
    if seconds < 0:
        return "in the future"
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


# --------------------------------------------------------------------------- reports


def report_key(key: str, config: PipelineConfig | None = None) -> str:
    """Check that key names a report file under the reports or quarantine prefix; return it.

    Rejects (ReportNotAllowed) absolute keys, '.'/'..'/empty segments (no traversal, whatever
    the object store would make of them), other prefixes and other file names (a quarantine
    folder also holds the raw data file, which the view does not hand out).
    """
    config = config or get_config()
    segments = key.split("/")
    if not key or key.startswith("/") or any(s in ("", ".", "..") for s in segments) or "\\" in key:
        raise ReportNotAllowed(f"{key!r} is not a plain object key")
    if posixpath.normpath(key) != key:
        raise ReportNotAllowed(f"{key!r} is not a normalized object key")
    prefixes = (config.storage.reports_prefix, config.storage.quarantine_prefix)
    if not key.startswith(prefixes):
        raise ReportNotAllowed(f"{key!r} is not under {' or '.join(prefixes)}")
    if segments[-1] not in REPORT_FILES:
        raise ReportNotAllowed(f"{key!r} is not a report ({', '.join(REPORT_FILES)})")
    return key


def key_of_uri(uri: str | None, config: PipelineConfig | None = None) -> str | None:
    """The report key of an s3://<bucket>/<key> URI of the pipeline's bucket, or None if it is not one."""
    config = config or get_config()
    prefix = f"s3://{config.storage.bucket}/"
    if not uri or not uri.startswith(prefix):
        return None
    try:
        return report_key(uri[len(prefix) :], config)
    except ReportNotAllowed:
        return None


def report_keys(uri: str | None, kind: str, config: PipelineConfig | None = None) -> list[str]:
    """The keys of the report at uri and its sibling files (SIBLINGS[kind]); [] when uri is not a report."""
    key = key_of_uri(uri, config)
    if key is None:
        return []
    folder = key.rsplit("/", 1)[0]
    return [f"{folder}/{name}" for name in SIBLINGS[kind]]


def report_view_url(uri: str | None, base_url: str | None = None) -> str | None:
    """The Model health view's link to the report at s3:// uri (for task logs), or None if it is not one.

    base_url: Airflow's [api] base_url (read from Airflow's configuration when not given).
    """
    import urllib.parse

    key = key_of_uri(uri)
    if key is None:
        return None
    if base_url is None:
        from airflow.configuration import conf

        base_url = conf.get("api", "base_url", fallback="") or ""
    return f"{base_url.rstrip('/')}{VIEW_PREFIX}/reports/{urllib.parse.quote(key)}"


def open_report(key: str) -> tuple[Iterator[bytes], str, int | None]:
    """Stream a report from the object store (S3Hook of the object_store connection).

    Returns (chunks, content type, length). Raises ReportNotAllowed for a key outside the
    report prefixes and FileNotFoundError when the object does not exist.
    """
    from botocore.exceptions import ClientError

    from mlops.io import objectstore

    config = get_config()
    key = report_key(key, config)
    try:
        obj = objectstore.client().get_object(Bucket=config.storage.bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            raise FileNotFoundError(f"s3://{config.storage.bucket}/{key} does not exist") from exc
        raise
    body = obj["Body"]
    return body.iter_chunks(CHUNK_BYTES), REPORT_FILES[key.rsplit("/", 1)[-1]], obj.get("ContentLength")


# --------------------------------------------------------------------------- models (MLflow)


def _holdout_and_baselines(run_metrics: dict, tags: dict) -> list[dict]:
    """Per metric: the version's holdout value (run metric, else holdout_<m> tag) and both baselines."""
    from mlops.monitoring.drift import holdout_metrics
    from mlops.training.metrics import METRICS

    tagged = holdout_metrics(tags)
    rows = []
    for name in METRICS:
        holdout = run_metrics.get(name, tagged.get(name))
        rows.append(
            {
                "metric": name,
                "holdout": holdout,
                "persistence": run_metrics.get(f"persistence_{name}"),
                "base_rate": run_metrics.get(f"base_rate_{name}"),
            }
        )
    return [row for row in rows if any(row[k] is not None for k in ("holdout", "persistence", "base_rate"))]


def model_card(client, name: str, alias: str) -> dict | None:
    """The version behind alias with its training window and metrics, or None without that alias."""
    from mlops.io.registry import alias_version

    version = alias_version(name, alias, client)
    if version is None:
        return None
    mv = client.get_model_version(name, version)
    run = client.get_run(mv.run_id)
    tags = dict(mv.tags or {})
    return {
        "alias": alias,
        "model_name": name,
        "version": str(mv.version),
        "run_id": mv.run_id,
        "family": tags.get("family") or run.data.tags.get("family"),
        "window_start": tags.get("window_start"),
        "window_end": tags.get("window_end"),
        "registered_at": dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, dt.UTC).strftime(
            warehouse.TIMESTAMP_FORMAT
        ),
        "previous_champion": tags.get("previous_champion"),
        "description": mv.description or "",
        "metrics": _holdout_and_baselines(dict(run.data.metrics), tags),
    }


def models(config: PipelineConfig | None = None) -> dict:
    """{"champion": card | None, "challenger": card | None, "mlflow_url": ..., "model_name": ...}.

    A challenger alias on the champion's own version is not a challenger (shown as None).
    """
    from mlops.io.connections import configure_mlflow

    config = config or get_config()
    # A page must answer while MLflow is down: the client's default retries back off for minutes.
    # Only the API server renders the view, so this changes no task's client (an explicit setting wins).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(MLFLOW_RETRIES))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(MLFLOW_TIMEOUT_SECONDS))
    mlflow = configure_mlflow()
    client = mlflow.MlflowClient()
    name = config.model.registered_name
    cards = {alias: model_card(client, name, alias) for alias in ALIASES}
    if cards["champion"] and cards["challenger"] and cards["challenger"]["version"] == cards["champion"]["version"]:
        cards["challenger"] = None
    return {**cards, "model_name": name, "mlflow_url": mlflow.get_tracking_uri()}


# --------------------------------------------------------------------------- warehouse


def _rows(conn, sql_name: str, **params) -> list[dict]:
    import sqlalchemy as sa

    result = conn.execute(sa.text(warehouse.render_sql(sql_name)), params)
    return [dict(row._mapping) for row in result]


def decisions(conn, limit: int = DEFAULT_LIMIT) -> list[dict]:
    """The latest rows of model_decisions, newest first."""
    return _rows(conn, "health/decisions.sql", limit=limit)


def drift_runs(conn, limit: int = DEFAULT_LIMIT, config: PipelineConfig | None = None) -> list[dict]:
    """The latest drift runs, newest first; drifted_features decoded to a list, report keys added."""
    rows = _rows(conn, "health/drift_runs.sql", limit=limit)
    for row in rows:
        row["drifted_features"] = json.loads(row["drifted_features"] or "[]")
        row["reports"] = report_keys(row["report_uri"], "drift", config)
    return rows


def batches(conn, limit: int = DEFAULT_LIMIT, config: PipelineConfig | None = None) -> list[dict]:
    """The latest batches, newest first, with the keys of their reports."""
    rows = _rows(conn, "health/batches.sql", limit=limit)
    for row in rows:
        row["reports"] = report_keys(row["report_uri"], "batch", config)
    return rows


def batch_counts(conn) -> dict[str, int]:
    """{status: number of batches}."""
    return {row["status"]: int(row["n_batches"]) for row in _rows(conn, "health/batch_counts.sql")}


def landing_objects(config: PipelineConfig | None = None, max_keys: int = 1000) -> dict:
    """Files waiting in the landing prefix: count (up to max_keys) and the newest's time."""
    from mlops.io.connections import s3_client

    config = config or get_config()
    response = s3_client().list_objects_v2(
        Bucket=config.storage.bucket, Prefix=config.storage.landing_prefix, MaxKeys=max_keys
    )
    times = [obj["LastModified"] for obj in response.get("Contents", []) if not obj["Key"].endswith("/")]
    return {
        "waiting": len(times),
        "truncated": bool(response.get("IsTruncated")),
        "newest": max(times) if times else None,
    }


def freshness(conn, now: dt.datetime, landing: dict | None) -> list[dict]:
    """Rows (what, when, age) of the pipeline's latest activities; wall-clock UTC."""
    row = _rows(conn, "health/freshness.sql")[0]
    newest_landed = landing["newest"] if landing else None
    received = parse_utc(row["last_batch_received"])
    last_landed = max((t for t in (newest_landed, received) if t is not None), default=None)
    items = [
        ("Last file landed", last_landed, "newest file waiting in landing, or the newest batch ingest received"),
        ("Last batch loaded", parse_utc(row["last_batch_loaded"]), "batches.loaded_at of status loaded"),
        ("Last predictions written", parse_utc(row["last_predictions_written"]), "predictions.scored_at"),
        ("Last drift check", parse_utc(row["last_drift_check"]), "drift_runs.created_at"),
        ("Last model decision", parse_utc(row["last_decision"]), "model_decisions.decided_at"),
    ]
    rows = [
        {
            "what": what,
            "when": t.strftime(warehouse.TIMESTAMP_FORMAT) if t else None,
            "age": age_text(t, now),
            "source": src,
        }
        for what, t, src in items
    ]
    rows.append(
        {
            "what": "Latest observation (data time)",
            "when": row["latest_observation"],
            "age": "",
            "source": "observations",
        }
    )
    return rows


# --------------------------------------------------------------------------- the page's data


def _section(name: str, errors: dict, fn: Callable, *args, default=None):
    """fn(*args), or default with the error recorded under name (one broken service, one blank section)."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - shown on the page, logged with its traceback
        log.exception("model health: %s failed", name)
        errors[name] = f"{type(exc).__name__}: {exc}"
        return default


def _query(engine, fn: Callable, *args):
    """fn(conn, *args) on a connection of its own (a failed query must not abort the next section's)."""
    with engine.connect() as conn:
        return fn(conn, *args)


def gather(now: dt.datetime | None = None, limit: int = DEFAULT_LIMIT) -> dict:
    """Everything the view shows. Read-only; sections that fail carry their error in "errors"."""
    config = get_config()
    now = now or dt.datetime.now(dt.UTC)
    errors: dict[str, str] = {}
    data = {"generated_at": now.strftime(warehouse.TIMESTAMP_FORMAT), "errors": errors, "config": config}
    data["models"] = _section("models", errors, models, config, default={})
    landing = _section("landing", errors, landing_objects, config)
    data["landing"] = landing
    try:
        engine = warehouse.engine()
    except Exception as exc:  # noqa: BLE001 - the connection itself may be missing
        errors["warehouse"] = f"{type(exc).__name__}: {exc}"
        return data
    try:
        data["decisions"] = _section("decisions", errors, _query, engine, decisions, limit, default=[])
        data["drift_runs"] = _section("drift_runs", errors, _query, engine, drift_runs, limit, config, default=[])
        data["batches"] = _section("batches", errors, _query, engine, batches, limit, config, default=[])
        data["batch_counts"] = _section("batch_counts", errors, _query, engine, batch_counts, default={})
        data["freshness"] = _section("freshness", errors, _query, engine, freshness, now, landing, default=[])
    finally:
        engine.dispose()
    return data
