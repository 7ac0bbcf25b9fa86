"""What drift_check does around the statistics: the champion and its reference profile, the
window of recent data, and where the results go (warehouse tables and object store).

Reference: the model version behind models:/<registered_name>@champion; its run holds the
profile of its training data (reference/reference_profile.json). Current: the observations
of the last window_days before the latest observation in the warehouse (the data may be
replayed history, so the window follows the data, not the clock) and the champion's
predictions over the same window. Results: a row per feature per run in `drift`, a row per
run in `drift_runs`, the full result as JSON and the HTML report under
<reports_prefix>drift/<drift run id>/ in the pipeline's bucket.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re

from mlops.config import PipelineConfig
from mlops.io import warehouse
from mlops.monitoring.profile import PROFILE_ARTIFACT_PATH, PROFILE_FILE

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
REPORT_FILE = "report.html"


def drift_run_id(airflow_run_id: str) -> str:
    """A key-safe id of the drift run, derived from the Airflow run id (so a re-run overwrites)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", airflow_run_id).strip("_")


def run_prefix(config: PipelineConfig, run_id: str) -> str:
    return f"{config.storage.reports_prefix}drift/{run_id}/"


def s3_uri(config: PipelineConfig, key: str) -> str:
    return f"s3://{config.storage.bucket}/{key}"


# --- the champion ------------------------------------------------------------------------------


def resolve_champion(config: PipelineConfig) -> dict | None:
    """The champion's version, run and holdout metrics, or None when there is no champion yet.
    A registry that cannot answer raises registry.RegistryUnavailable (see mlops.io.registry)."""
    from mlops.io import registry
    from mlops.monitoring.drift import holdout_metrics

    client = registry.client()
    name = config.model.registered_name
    champion = registry.champion_version(name, client)
    if champion is None:
        return None
    version = client.get_model_version(name, champion)
    run = client.get_run(version.run_id)
    return {
        "model_name": name,
        "version": str(version.version),
        "run_id": version.run_id,
        "holdout": holdout_metrics(version.tags),
        "profile_uri": f"{run.info.artifact_uri.rstrip('/')}/{PROFILE_ARTIFACT_PATH}/{PROFILE_FILE}",
    }


def load_profile(profile_uri: str) -> dict:
    from mlops.io.connections import configure_mlflow

    mlflow = configure_mlflow()
    return mlflow.artifacts.load_dict(profile_uri)


# --- the window ------------------------------------------------------------------------------


def window_bounds(window_days: int, window_end: str | None = None) -> tuple[str, str] | None:
    """(start, end] of the window as warehouse timestamps; None when there are no observations."""
    import pandas as pd

    warehouse.ensure_schema()
    if window_end:
        end = pd.Timestamp(window_end)
    else:
        latest = warehouse.read_sql("latest_observation.sql")["latest"].iloc[0]
        if latest is None or pd.isna(latest):
            return None
        end = pd.Timestamp(latest)
    start = end - pd.Timedelta(days=window_days)
    return start.strftime(warehouse.TIMESTAMP_FORMAT), end.strftime(warehouse.TIMESTAMP_FORMAT)


def load_observations(config: PipelineConfig, start: str, end: str, names: list[str] | None = None):
    """The observations of the window with the configured types (time column as datetime64).

    names: the columns to read (default: every configured column).
    """
    import pandas as pd

    frame = warehouse.read_sql(
        "drift/observations_window.sql", {"window_start": start, "window_end": end}, selected=names
    )
    dataset = config.dataset
    frame[dataset.time_column] = pd.to_datetime(frame[dataset.time_column], format=warehouse.TIMESTAMP_FORMAT)
    for name, spec in dataset.columns.items():
        if spec.type in ("float", "int") and name in frame:
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
    return frame


def window_data(config: PipelineConfig, start: str, end: str) -> tuple:
    """(observations, merged batch profile or None, source) of the window (start, end].

    With drift.from_profiles the features' counts come from the stored batch profiles
    (mlops.monitoring.batch_profile), merged over whole days: the window becomes the days after start's
    day up to end's day, and only the columns the profiles cannot replace are read (time,
    label source, features without a fixed grid). Profiling is ingest's job (its
    profile_batches task, after every load); drift_check only reads profiles. When a loaded
    batch has no current profile (that task failed or has not run yet, or a later batch
    replaced rows of it), profiles made on another grid (the configured ranges changed), or
    profiles holding another number of rows than the window (rows stored without a batch, a
    window_end inside a day): the rows are read, and source says why.
    source: {kind, batches, start, notes}.
    """
    from mlops.monitoring import batch_profile

    dataset = config.dataset
    if not config.drift.from_profiles:
        return load_observations(config, start, end), None, {"kind": "rows", "start": start, "notes": []}
    start_day, end_day = _next_day(start), end[:10]
    aligned = f"{start[:10]} 23:59:59"  # rows after start's day: the profiles' whole days
    pending = batch_profile.pending_batches()
    if pending:
        shown = ", ".join(pending[:5]) + (f" and {len(pending) - 5} more" if len(pending) > 5 else "")
        return _rows_instead(
            config,
            start,
            end,
            f"{len(pending)} loaded batch(es) without a current profile ({shown}; ingest's profile_batches "
            "stores them): the window's rows were read",
        )
    try:
        merged, batches = batch_profile.window_profile(start_day, end_day)
    except ValueError as exc:
        return _rows_instead(config, start, end, f"batch profiles not used ({exc}): the window's rows were read")
    gaps = batch_profile.profile_gaps(dataset)
    names = [dataset.time_column, dataset.label.source_column, *gaps]
    notes = [f"features from {batches} batch profiles, days {start_day} to {end_day}"]
    if gaps:
        notes.append(f"no fixed grid (no range or allowed values), read from rows: {', '.join(gaps)}")
    current = load_observations(config, aligned, end, list(dict.fromkeys(names)))
    profiled_rows = batch_profile.window_totals(merged)["rows"]
    if profiled_rows != len(current):
        # Rows stored without a batch profile (not loaded by ingest), or a window_end inside a
        # day: the profiles do not describe exactly the window's rows.
        note = (
            f"the batch profiles hold {profiled_rows} rows of days {start_day} to {end_day}, the window "
            f"{len(current)}: the window's rows were read"
        )
        return _rows_instead(config, start, end, note)
    return current, merged, {"kind": "batch profiles", "batches": batches, "start": aligned, "notes": notes}


def _rows_instead(config: PipelineConfig, start: str, end: str, note: str) -> tuple:
    """window_data's answer when the batch profiles cannot stand for the window: its rows, and why."""
    log.warning(note)
    return load_observations(config, start, end), None, {"kind": "rows", "start": start, "notes": [note]}


def _next_day(timestamp: str) -> str:
    import pandas as pd

    return (pd.Timestamp(timestamp[:10]) + pd.Timedelta(days=1)).strftime("%Y-%m-%d")


def load_predictions(
    config: PipelineConfig, champion: dict, role: str, start: str, end: str, version: str | None = None
):
    """Predictions of a model version in a role over the window, one (the latest) per time."""
    import pandas as pd

    time_col = config.dataset.time_column
    frame = warehouse.read_sql(
        "drift/predictions_window.sql",
        {
            "model_name": champion["model_name"],
            "model_version": version or champion["version"],
            "role": role,
            "window_start": start,
            "window_end": end,
        },
    )
    frame = frame.drop_duplicates(time_col, keep="last")
    frame[time_col] = pd.to_datetime(frame[time_col], format=warehouse.TIMESTAMP_FORMAT)
    return frame[[time_col, "probability", "predicted_label"]].reset_index(drop=True)


def challenger_version(config: PipelineConfig, champion: dict, start: str, end: str) -> str | None:
    """The latest model version with shadow (challenger) predictions in the window, if any."""
    import sqlalchemy as sa

    with warehouse.engine().connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT model_version FROM predictions WHERE model_name = :name AND role = 'challenger' "
                f"AND {warehouse.quote(config.dataset.time_column)} > :start "
                f"AND {warehouse.quote(config.dataset.time_column)} <= :end "
                "ORDER BY scored_at DESC LIMIT 1"
            ),
            {"name": champion["model_name"], "start": start, "end": end},
        ).first()
    return str(row[0]) if row else None


# --- results ---------------------------------------------------------------------------------


def put_object(config: PipelineConfig, key: str, body: str, content_type: str) -> str:
    from mlops.io import objectstore

    return objectstore.put_text(key, body, content_type)


def get_object_text(config: PipelineConfig, uri: str) -> str:
    from mlops.io import objectstore

    return objectstore.get_text(uri)


def save_result(config: PipelineConfig, result: dict) -> str:
    """Write the full result (JSON) to the object store and its rows to the warehouse."""
    from mlops.monitoring.drift import json_safe

    result = json_safe(result)
    uri = put_object(
        config,
        run_prefix(config, result["drift_run_id"]) + RESULT_FILE,
        json.dumps(result, indent=1),
        "application/json",
    )
    write_rows(result)
    return uri


def _metric(block: dict | None, name: str):
    return None if not block else block.get(name)


def write_rows(result: dict) -> None:
    """Replace the run's rows in drift_runs and drift (idempotent)."""
    import sqlalchemy as sa

    warehouse.ensure_schema()
    now = dt.datetime.now(dt.UTC).strftime(warehouse.TIMESTAMP_FORMAT)
    run_id = result["drift_run_id"]
    run_row = _run_row(result, now)
    feature_rows = _feature_rows(result, now)
    with warehouse.engine().begin() as conn:
        for statement in warehouse.split_statements(warehouse.render_sql("drift/delete_run.sql")):
            conn.execute(sa.text(statement), {"drift_run_id": run_id})
        conn.execute(sa.text(warehouse.render_sql("drift/insert_run.sql")), run_row)
        conn.execute(sa.text(warehouse.render_sql("drift/insert_feature.sql")), feature_rows)


def _run_row(result: dict, now: str) -> dict:
    """The run's drift_runs row: window, drift rule, score drift and realized performance."""
    run_id = result["drift_run_id"]
    performance = result["performance"]
    champion, challenger, holdout = performance["champion"], performance["challenger"], performance["holdout"]
    rule, scores = result["rule"], result["scores"]
    return {
        "drift_run_id": run_id,
        "airflow_run_id": result["airflow_run_id"],
        "model_name": result["champion"]["model_name"],
        "model_version": result["champion"]["version"],
        "window_start": result["window"]["start"],
        "window_end": result["window"]["end"],
        "n_reference": result["n_reference"],
        "n_current": result["n_current"],
        "n_drifted": len(rule["drifted_features"]),
        "drifted_share": rule["drifted_share"],
        "drifted_features": json.dumps(rule["drifted_features"]),
        "score_psi": _metric(scores, "psi"),
        "score_p_value": _metric(scores, "p_value"),
        "n_labeled": _metric(champion, "n"),
        "realized_accuracy": _metric(champion, "accuracy"),
        "realized_f1": _metric(champion, "f1"),
        "realized_brier": _metric(champion, "brier"),
        "holdout_accuracy": holdout.get("accuracy"),
        "holdout_f1": holdout.get("f1"),
        "holdout_brier": holdout.get("brier"),
        "challenger_n_labeled": _metric(challenger, "n"),
        "challenger_accuracy": _metric(challenger, "accuracy"),
        "challenger_f1": _metric(challenger, "f1"),
        "challenger_brier": _metric(challenger, "brier"),
        "rule_fired": int(rule["fired"]),
        "reason": rule["reason"],
        "report_uri": result["report_uri"],
        "created_at": now,
    }


def _feature_rows(result: dict, now: str) -> list[dict]:
    """The run's drift rows, one per feature."""
    run_id = result["drift_run_id"]
    return [
        {
            "drift_run_id": run_id,
            "feature": f["feature"],
            "feature_type": f["type"],
            "n_current": f["n_current"],
            "psi": f["psi"],
            "test": f["test"],
            "test_statistic": f["statistic"],
            "p_value": f["p_value"],
            "distance": f["distance"],
            "reference_missing_rate": f["reference_missing_rate"],
            "current_missing_rate": f["current_missing_rate"],
            "missing_rate_change": f["missing_rate_change"],
            "drifted": int(f["drifted"]),
            "reasons": "; ".join(f["reasons"]),
            "created_at": now,
        }
        for f in result["features"]
    ]


def record_decision(run_id: str, decision: str, detail: str, train_run_id: str | None = None) -> None:
    import sqlalchemy as sa

    with warehouse.engine().begin() as conn:
        conn.execute(
            sa.text(warehouse.render_sql("drift/record_decision.sql")),
            {
                "drift_run_id": run_id,
                "retrain_decision": decision,
                "retrain_detail": detail,
                "train_run_id": train_run_id,
            },
        )


# --- the whole measurement -------------------------------------------------------------------


def measure(
    config: PipelineConfig, champion: dict, airflow_run_id: str, window_days: int, window_end: str | None, thresholds
) -> dict | None:
    """Compute drift for the window, store the result; None when the window has no data."""
    from mlops.monitoring.drift import compute_drift

    bounds = window_bounds(window_days, window_end)
    if bounds is None:
        return None
    start, end = bounds
    current, merged, source = window_data(config, start, end)
    start = source["start"]
    if current.empty:
        return None
    profile = load_profile(champion["profile_uri"])
    champion_predictions = load_predictions(config, champion, "champion", start, end)
    challenger = challenger_version(config, champion, start, end)
    challenger_predictions = (
        load_predictions(config, champion, "challenger", start, end, version=challenger) if challenger else None
    )
    result = compute_drift(
        config.dataset,
        profile,
        current,
        thresholds,
        champion_predictions=champion_predictions,
        challenger_predictions=challenger_predictions,
        holdout=champion["holdout"],
        merged=merged,
    )
    run_id = drift_run_id(airflow_run_id)
    result["source"] = source
    result.update(
        drift_run_id=run_id,
        airflow_run_id=airflow_run_id,
        window={"start": start, "end": end, "days": window_days},
        champion={k: champion[k] for k in ("model_name", "version", "run_id", "profile_uri")},
        challenger_version=challenger,
        reference_created_at=profile.get("created_at"),
        report_uri=s3_uri(config, run_prefix(config, run_id) + REPORT_FILE),
        created_at=dt.datetime.now(dt.UTC).strftime(warehouse.TIMESTAMP_FORMAT),
    )
    result["result_uri"] = save_result(config, result)
    return result


def summary(result: dict) -> dict:
    """The small part of a result that travels through XCom."""
    return {
        "drift_run_id": result["drift_run_id"],
        "result_uri": result["result_uri"],
        "report_uri": result["report_uri"],
        "window": result["window"],
        "model_version": result["champion"]["version"],
        "fired": result["rule"]["fired"],
        "reason": result["rule"]["reason"],
        "drifted_features": result["rule"]["drifted_features"],
        # realized and/or estimated: which performance fell below the holdout (empty: none).
        "performance_dropped": result["performance"]["dropped"],
        "season_notes": result["season"]["notes"],
    }
