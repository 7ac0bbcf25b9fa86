"""Training for the train DAG: data window, time-ordered split, candidate pipelines, search,
MLflow tracking and registration.

The data: the configured window of observations read from the warehouse by
include/sql/training_window.sql (the window ends at the newest observation), labelled by
mlops.labels (t + steps_ahead, gap-aware), rows without a label dropped, sorted by time.
The split: holdout = the most recent `holdout_fraction` of labelled rows; the rows before it
are used for tuning with TimeSeriesSplit. Training rows whose label looks into the holdout
period are purged, and the CV folds leave a gap of steps_ahead rows, so nothing looks ahead.

The model: one scikit-learn Pipeline (calendar features from the time column, imputation,
scaling where the estimator needs it, the estimator) taking the time column and the raw
feature columns. Candidates are tuned by RandomizedSearchCV on the promotion metric,
seeded with model.random_seed; the one with the best cross-validated score is chosen (the
holdout is only used to report and to compare with the champion, never to choose).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import subprocess
import time
from typing import Any

from mlops.config import MODEL_FAMILIES, PROJECT_ROOT, DatasetConfig, PipelineConfig, get_config
from mlops.io.warehouse import TIMESTAMP_FORMAT

log = logging.getLogger(__name__)

MODEL_ARTIFACT = "model"
TRAIN_RESULT_FILE = "train_result.json"
# Below this, a time-series search and a holdout say nothing useful.
# A registered version's lineage (data digest, batch ids, Airflow run), in its train run.
REGISTRATION_ARTIFACT = "registry/model_version.json"


# ---------------------------------------------------------------- settings and trigger


def resolve_settings(params: dict | None, cfg: PipelineConfig | None = None) -> dict:
    """Params of a manual run (None = use the configuration) -> the settings of this run."""
    cfg = cfg or get_config()
    params = params or {}

    def pick(key, default):
        value = params.get(key)
        return default if value in (None, "", []) else value

    families = list(pick("model_families", cfg.model.families))
    unknown = sorted(set(families) - set(MODEL_FAMILIES))
    if unknown:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(
            f"params.model_families: unknown families {unknown}; choose from {list(MODEL_FAMILIES)}"
        )
    return {
        "training_window_days": int(pick("training_window_days", cfg.model.training_window_days)),
        "model_families": families,
        "search_iterations": int(pick("search_iterations", cfg.model.search_iterations)),
        "force_promote": bool(params.get("force_promote") or False),
    }


def trigger_info(params: dict | None, dag_run: Any) -> dict:
    """Who or what started this run and why: drift_check's conf, a user, or the schedule."""
    params = params or {}
    run_type = str(getattr(getattr(dag_run, "run_type", None), "value", getattr(dag_run, "run_type", "")) or "unknown")
    user = getattr(dag_run, "triggering_user_name", None)
    reason = params.get("reason") or {"scheduled": "schedule"}.get(run_type, run_type)
    drifted = params.get("drifted_features") or []
    return {
        "dag_id": getattr(dag_run, "dag_id", "train"),
        "run_id": getattr(dag_run, "run_id", "local"),
        "run_type": run_type,
        "triggered_by": f"{run_type}" + (f" by {user}" if user else ""),
        "reason": str(reason),
        "drifted_features": [str(f) for f in drifted],
        "report_uri": params.get("report_uri") or "",
    }


def git_commit() -> str:
    """The project's git commit, best effort (empty outside a checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


# ---------------------------------------------------------------- data


def resolve_window(window_days: int) -> dict:
    """The window [newest observation - window_days, newest observation], as warehouse text.

    An empty warehouse skips the run (a schedule that fires before the first ingest is not an error).
    """
    from airflow.sdk.exceptions import AirflowSkipException

    from mlops.io import warehouse

    warehouse.ensure_schema()
    row = warehouse.read_sql("latest_observation.sql").iloc[0]
    if not row["latest"]:
        raise AirflowSkipException("warehouse table observations is empty: nothing to train on (run ingest first)")
    end = dt.datetime.strptime(str(row["latest"]), warehouse.TIMESTAMP_FORMAT)
    start = end - dt.timedelta(days=window_days)
    return {
        "window_days": int(window_days),
        "window_start": start.strftime(warehouse.TIMESTAMP_FORMAT),
        "window_end": end.strftime(warehouse.TIMESTAMP_FORMAT),
    }


def window_query() -> str:
    """The rendered SQL of the training window (logged as the data set's source)."""
    from mlops.io import warehouse

    return warehouse.render_sql("training_window.sql")


def load_window(window: dict):
    """The raw observations of the window, in time order, as the warehouse returns them."""
    from mlops.io import warehouse

    return warehouse.read_sql(
        "training_window.sql", {"window_start": window["window_start"], "window_end": window["window_end"]}
    )


def frame_digest(frame, columns: list[str]) -> str:
    """A content digest of the given columns, row order included (32 hex characters)."""
    import pandas as pd

    hashed = pd.util.hash_pandas_object(frame[columns].reset_index(drop=True), index=False)
    digest = hashlib.sha256(hashed.to_numpy().tobytes())
    digest.update(json.dumps(columns).encode())
    return digest.hexdigest()[:32]


def describe_window(raw, dataset: DatasetConfig) -> dict:
    """Digest, batch ids and sizes of the raw window (the snapshot train and promote rely on)."""
    labelled = prepare(raw, dataset)
    return {
        "rows": int(len(raw)),
        "labelled_rows": int(len(labelled)),
        "data_digest": frame_digest(raw, list(dataset.columns)),
        "batch_ids": sorted({str(b) for b in raw["batch_id"].dropna()}),
    }


def prepare(raw, dataset: DatasetConfig):
    """Typed, labelled, time-sorted rows; rows without a label (no t+h observation) dropped."""
    import pandas as pd

    from mlops.labels import add_label

    frame = raw.copy()
    frame[dataset.time_column] = pd.to_datetime(frame[dataset.time_column], format=TIMESTAMP_FORMAT)
    for name, spec in dataset.columns.items():
        if name != dataset.time_column and spec.type in ("float", "int") and name in frame:
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
    frame = add_label(frame, dataset)
    label = dataset.label.name
    frame = frame.dropna(subset=[label]).sort_values(dataset.time_column, kind="stable").reset_index(drop=True)
    frame[label] = frame[label].astype(int)
    return frame


def split(frame, dataset: DatasetConfig, holdout_fraction: float):
    """(training, holdout): holdout = most recent rows; training rows whose label time falls
    in the holdout period are purged (their label is a holdout observation)."""
    import math

    from mlops.labels import horizon

    n_holdout = max(1, math.ceil(len(frame) * holdout_fraction))
    holdout = frame.iloc[len(frame) - n_holdout :].reset_index(drop=True)
    before = frame.iloc[: len(frame) - n_holdout]
    holdout_start = holdout[dataset.time_column].iloc[0]
    training = before[before[dataset.time_column] + horizon(dataset) < holdout_start].reset_index(drop=True)
    return training, holdout


def load_split(window: dict, dataset: DatasetConfig, holdout_fraction: float, expected_digest: str | None = None):
    """Re-read the snapshot window, check it is unchanged, and split it: (training, holdout)."""
    from airflow.sdk.exceptions import AirflowFailException

    raw = load_window(window)
    if expected_digest is not None:
        digest = frame_digest(raw, list(dataset.columns))
        if digest != expected_digest:
            raise AirflowFailException(
                f"observations between {window['window_start']} and {window['window_end']} changed since the "
                f"snapshot (digest {digest} != {expected_digest}); trigger train again"
            )
    training, holdout = split(prepare(raw, dataset), dataset, holdout_fraction)
    label = dataset.label.name
    problems = []
    minimum = get_config().model
    if len(training) < minimum.min_training_rows:
        problems.append(f"{len(training)} training rows (need model.min_training_rows = {minimum.min_training_rows})")
    if len(holdout) < minimum.min_holdout_rows:
        problems.append(f"{len(holdout)} holdout rows (need model.min_holdout_rows = {minimum.min_holdout_rows})")
    for name, part in (("training", training), ("holdout", holdout)):
        if len(part) and part[label].nunique() < 2:
            problems.append(f"the {name} rows have a single class of {label}")
    if problems:
        raise AirflowFailException(
            f"training window {window['window_start']}..{window['window_end']} of table observations: "
            + "; ".join(problems)
            + ". Widen params.training_window_days or load more data."
        )
    return training, holdout


def model_columns(dataset: DatasetConfig) -> list[str]:
    """The columns the model takes: the time column and the raw features."""
    return [dataset.time_column, *dataset.features]


# ---------------------------------------------------------------- pipelines and search


def _preprocessor(dataset: DatasetConfig, scale: bool):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    from mlops.features import calendar_feature_names, calendar_features

    parts = []
    if dataset.numeric_features:
        # Impute: ingest nulls physically impossible values (e.g. pressure 0) instead of dropping rows.
        steps = [("impute", SimpleImputer(strategy="median"))]
        if scale:
            steps.append(("scale", StandardScaler()))
        parts.append(("numeric", Pipeline(steps), list(dataset.numeric_features)))
    if dataset.categorical_features:
        categorical = Pipeline(
            [("impute", SimpleImputer(strategy="most_frequent")), ("encode", OneHotEncoder(handle_unknown="ignore"))]
        )
        parts.append(("categorical", categorical, list(dataset.categorical_features)))
    if dataset.calendar_features:
        calendar = FunctionTransformer(
            calendar_features,
            kw_args={"features": list(dataset.calendar_features)},
            feature_names_out=calendar_feature_names,
        )
        parts.append(("calendar", calendar, [dataset.time_column]))
    return ColumnTransformer(parts, remainder="drop")


def build_pipeline(family: str, dataset: DatasetConfig, seed: int):
    """An unfitted Pipeline(preprocess -> estimator) for one model family."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.svm import SVC

    estimators = {
        "logistic_regression": (LogisticRegression(max_iter=2000), True),
        # No early stopping: its validation split would be random rows, not the future.
        "hist_gradient_boosting": (HistGradientBoostingClassifier(early_stopping=False, random_state=seed), False),
        "random_forest": (RandomForestClassifier(n_jobs=1, random_state=seed), False),
        # Platt scaling (what SVC(probability=True), deprecated, did) by sklearn's calibrator.
        "svm": (CalibratedClassifierCV(SVC(random_state=seed), method="sigmoid", cv=3), True),
    }
    estimator, scale = estimators[family]
    return Pipeline([("preprocess", _preprocessor(dataset, scale)), ("model", estimator)])


def param_space(family: str) -> dict:
    """Search distributions per family (keys address the pipeline's `model` step)."""
    from scipy.stats import loguniform, randint

    spaces = {
        "logistic_regression": {"C": loguniform(1e-3, 1e2), "class_weight": [None, "balanced"]},
        "hist_gradient_boosting": {
            "learning_rate": loguniform(0.02, 0.3),
            "max_iter": randint(50, 200),
            "max_leaf_nodes": randint(8, 48),
            "min_samples_leaf": randint(10, 100),
            "l2_regularization": loguniform(1e-3, 10),
        },
        "random_forest": {
            "n_estimators": randint(100, 300),
            "max_depth": [None, 6, 10, 16],
            "min_samples_leaf": randint(1, 20),
            "max_features": ["sqrt", 0.5],
        },
        "svm": {"estimator__C": loguniform(0.1, 100), "estimator__gamma": loguniform(1e-3, 1)},
    }
    return {f"model__{key}": value for key, value in spaces[family].items()}


def search(family: str, training, dataset: DatasetConfig, cfg: PipelineConfig, iterations: int):
    """RandomizedSearchCV over TimeSeriesSplit folds, seeded; returns the fitted search.

    A configuration whose fold cannot be scored (e.g. a fold with one class, where ROC AUC
    is undefined) scores NaN; if every configuration does, the data window is the problem.
    """
    import numpy as np
    from airflow.sdk.exceptions import AirflowFailException
    from sklearn.model_selection import RandomizedSearchCV, TimeSeriesSplit
    from threadpoolctl import threadpool_limits

    from mlops.training.metrics import search_scorer

    folds = TimeSeriesSplit(n_splits=cfg.model.cv_splits, gap=dataset.label.steps_ahead)
    searcher = RandomizedSearchCV(
        build_pipeline(family, dataset, cfg.model.random_seed),
        param_space(family),
        n_iter=iterations,
        scoring=search_scorer(cfg.promotion.metric),
        cv=folds,
        random_state=cfg.model.random_seed,
        n_jobs=cfg.model.n_jobs,
        refit=True,
        error_score=np.nan,
    )
    # One thread per fit: OpenMP threads of gradient boosting oversubscribe a shared machine.
    with threadpool_limits(limits=1):
        searcher.fit(training[model_columns(dataset)], training[dataset.label.name])
    if np.isnan(searcher.cv_results_["mean_test_score"]).all():
        raise AirflowFailException(
            f"{family}: no configuration could be scored on the TimeSeriesSplit folds of the training window "
            f"(a fold with a single class of {dataset.label.name}?); widen params.training_window_days"
        )
    return searcher


def skip_reason(family: str, n_training_rows: int, cfg: PipelineConfig) -> str | None:
    """Why a family is not trained on this data, or None."""
    if family == "svm" and n_training_rows > cfg.model.svm_max_rows:
        return (
            f"svm skipped: {n_training_rows} training rows > model.svm_max_rows={cfg.model.svm_max_rows} "
            "(kernel SVM fitting grows quadratically with rows)"
        )
    return None


def reference_profile(model, training, holdout, dataset: DatasetConfig) -> dict:
    """The drift reference of a chosen model: mlops.monitoring.profile.build_profile of its whole window.

    training, holdout: the frames of split(), each with dataset.features and the label. The
    reference holds both: the model was validated on the holdout's months too, and the holdout
    is the most recent season; without it drift_check compared that season (e.g. December of
    a window ending in December) with other months and fired on the season alone.
    The holdout's calibration is recorded so drift_check knows whether to trust its estimate.
    Both frames keep the time column, so the profile also estimates each feature's
    autocorrelation at dataset.frequency (the design effect drift_check's tests divide their
    sample sizes by; the purged rows between them are a gap, not neighbours).
    """
    import pandas as pd

    from mlops.monitoring.profile import build_profile, calibration_profile

    columns, label = model_columns(dataset), dataset.label.name
    reference = pd.concat([training, holdout], ignore_index=True)
    scores = model.predict_proba(reference[columns])[:, 1]
    calibration = calibration_profile(holdout[label], model.predict_proba(holdout[columns])[:, 1])
    return build_profile(reference, dataset, scores=scores, calibration=calibration)


def baseline_metrics(training, holdout, dataset: DatasetConfig, threshold: float) -> dict:
    """Persistence and base-rate metrics on the holdout."""
    from mlops.training.metrics import base_rate_proba, classification_metrics, persistence_proba

    y = holdout[dataset.label.name]
    positive_rate = float(training[dataset.label.name].mean())
    return {
        "persistence": classification_metrics(y, persistence_proba(holdout, dataset), threshold),
        "base_rate": classification_metrics(y, base_rate_proba(len(holdout), positive_rate), threshold),
        "positive_rate": positive_rate,
    }


# ---------------------------------------------------------------- MLflow


def _dataset_source(snapshot: dict):
    from mlflow.data.dataset_source import DatasetSource

    class WarehouseQuerySource(DatasetSource):
        """Rows read from the warehouse by an SQL query (the training window)."""

        def __init__(self, info: dict):
            self._info = info

        @staticmethod
        def _get_source_type() -> str:
            return "warehouse_sql"

        def load(self, **kwargs):
            raise NotImplementedError("re-run the query through the warehouse connection")

        @staticmethod
        def _can_resolve(raw_source) -> bool:
            return False

        @classmethod
        def _resolve(cls, raw_source):
            raise NotImplementedError

        def to_dict(self) -> dict:
            return self._info

        @classmethod
        def from_dict(cls, source_dict: dict):
            return cls(source_dict)

    return WarehouseQuerySource(
        {
            "connection": get_config().connections.warehouse,
            "query": window_query(),
            "params": {"window_start": snapshot["window_start"], "window_end": snapshot["window_end"]},
            **batch_summary(snapshot["batch_ids"]),
            "data_digest": snapshot["data_digest"],
        }
    )


def batch_summary(batch_ids: list[str]) -> dict:
    """What a dataset source says about the window's batches, bounded in size whatever their
    number (MLflow caps a source at 65,535 characters): count, first and last id, and the
    SHA-256 of the sorted ids joined by newlines. The full list is the run artifact
    data/window.json."""
    ids = sorted(batch_ids)
    return {
        "batch_count": len(ids),
        "first_batch": ids[0] if ids else None,
        "last_batch": ids[-1] if ids else None,
        "batch_ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
        "batch_ids_artifact": "data/window.json",
    }


def _log_datasets(mlflow, training, holdout, dataset: DatasetConfig, source) -> dict:
    """Log the training and holdout rows as run inputs (query as source, content digests)."""
    columns = [*model_columns(dataset), dataset.label.name]
    digests = {}
    for context, part in (("training", training), ("holdout", holdout)):
        digest = frame_digest(part, columns)
        ds = mlflow.data.from_pandas(
            part[columns],
            source=source,
            targets=dataset.label.name,
            name=f"{dataset.name}_{context}",
            digest=digest,
        )
        mlflow.log_input(ds, context=context)
        digests[context] = digest
    return digests


def _log_plots(mlflow, y, proba, threshold: float, title: str) -> None:
    import matplotlib.pyplot as plt

    from mlops.training.metrics import calibration_figure, confusion_matrix_figure

    for name, fig in (
        ("confusion_matrix.png", confusion_matrix_figure(y, proba, threshold, title)),
        ("calibration.png", calibration_figure(y, proba, title)),
    ):
        mlflow.log_figure(fig, f"plots/{name}")
        plt.close(fig)


def _flat_metrics(prefix: str, values: dict) -> dict:
    return {f"{prefix}{k}": v for k, v in values.items() if v == v}  # drop NaN (e.g. AUC of one class)


def find_finished_train(mlflow, experiment_id: str, run_id: str) -> dict | None:
    """The result of an earlier successful train task of the same DAG run (idempotent reruns)."""
    runs = mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string=f"tags.`airflow.run_id` = '{run_id}' and tags.train_status = 'finished'",
        output_format="list",
    )
    for run in runs:
        if "mlflow.parentRunId" not in run.data.tags:
            path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=TRAIN_RESULT_FILE)
            with open(path) as fh:
                return json.load(fh)
    return None


def supersede_unfinished_train(mlflow, experiment_id: str, run_id: str) -> list[str]:
    """End the runs an earlier, dead attempt of the same DAG run left RUNNING (a killed worker
    cannot end them) as FAILED, tagged superseded; returns their ids. A retry then opens one
    new parent run, the only one of the DAG run that finishes."""
    client = mlflow.MlflowClient()
    stale = client.search_runs([experiment_id], f"tags.`airflow.run_id` = '{run_id}' and attributes.status = 'RUNNING'")
    for run in stale:
        client.set_tag(run.info.run_id, "train_status", "superseded")
        client.set_terminated(run.info.run_id, status="FAILED")
        log.warning("ended run %s of an earlier attempt of %s as FAILED (superseded)", run.info.run_id, run_id)
    return [run.info.run_id for run in stale]


def _record_family_failure(mlflow, family: str, exc: Exception) -> str:
    """Put a family's search error on its child run (tags and error.txt) and in the task log."""
    import traceback

    reason = f"{family} failed: {type(exc).__name__}: {exc}"
    mlflow.set_tags({"candidate_status": "failed", "error": reason[:4000]})
    mlflow.log_text("".join(traceback.format_exception(exc)), "error.txt")
    log.warning("%s; the other families go on", reason)
    return reason


def train_from_snapshot(snapshot: dict) -> dict:
    """The train DAG's train_candidates task: everything it needs is in the snapshot's XCom
    (window, digest, settings, trigger), so it runs the same in the worker or in a container."""
    result = train_candidates(snapshot)
    for candidate in result["candidates"]:
        print(candidate)
    return result


def train_candidates(snapshot: dict) -> dict:
    """Search every family, log a parent run and a child run per candidate, log the chosen model.

    `snapshot`: the window (window_start, window_end, window_days), its batch_ids and
    data_digest, the run's settings and trigger (see describe_window, resolve_settings).
    Returns small JSON for XCom: run ids, the chosen candidate's model URI and metrics.
    """
    from mlops.io.connections import configure_mlflow

    cfg = get_config()
    mlflow = configure_mlflow()
    experiment = mlflow.set_experiment(cfg.model.registered_name)
    describe_experiment(mlflow, experiment.experiment_id, cfg)
    trigger = snapshot["trigger"]
    earlier = find_finished_train(mlflow, experiment.experiment_id, trigger["run_id"])
    if earlier is not None:
        log.info("train already finished for %s in run %s: reusing it", trigger["run_id"], earlier["parent_run_id"])
        return earlier
    supersede_unfinished_train(mlflow, experiment.experiment_id, trigger["run_id"])

    run = _prepare_run(mlflow, cfg, snapshot)
    with mlflow.start_run(run_name=f"train {trigger['run_id']}", tags=run.tags) as parent:
        digests = _log_parent(run, snapshot)
        candidates, fitted = [], {}
        for family in snapshot["settings"]["model_families"]:
            candidate, model = _train_family(run, family, snapshot["settings"]["search_iterations"])
            candidates.append(candidate)
            if model is not None:
                fitted[family] = model
        best = _choose(mlflow, candidates)
        model_info = _log_chosen(run, best["run_id"], fitted[best["family"]])
        result = {
            "parent_run_id": parent.info.run_id,
            "experiment_id": experiment.experiment_id,
            **_candidates_result(best, model_info, candidates),
            "baselines": run.baselines,
            "data_digest": snapshot["data_digest"],
            "dataset_digests": digests,
            "n_training": len(run.training),
            "n_holdout": len(run.holdout),
            "training_end": run.training[run.cfg.dataset.time_column].max().strftime(TIMESTAMP_FORMAT),
        }
        mlflow.set_tags({"chosen_family": best["family"], "chosen_run_id": best["run_id"]})
        mlflow.log_dict(result, TRAIN_RESULT_FILE)
        mlflow.set_tag("train_status", "finished")
    return result


@dataclasses.dataclass
class _TrainRun:
    """What every step of one train_candidates run shares: the MLflow module, configuration,
    the split data, its baselines, the MLflow dataset source and the runs' tags."""

    mlflow: object
    cfg: object
    training: object  # pandas DataFrame
    holdout: object  # pandas DataFrame
    baselines: dict
    source: object
    tags: dict


def _prepare_run(mlflow, cfg, snapshot: dict) -> _TrainRun:
    """Load and split the snapshot's window, compute the baselines, the runs' tags; log the trigger."""
    dataset, trigger = cfg.dataset, snapshot["trigger"]
    training, holdout = load_split(snapshot, dataset, cfg.model.holdout_fraction, snapshot["data_digest"])
    baselines = baseline_metrics(training, holdout, dataset, cfg.model.decision_threshold)
    commit = trigger.get("git_commit") or git_commit()  # from the snapshot: a container has no checkout
    log.info(
        "trigger: %s (reason=%s, drifted_features=%s, report=%s)",
        trigger["triggered_by"],
        trigger["reason"],
        trigger["drifted_features"],
        trigger["report_uri"],
    )
    log.info(
        "training rows %d, holdout rows %d, window %s..%s",
        len(training),
        len(holdout),
        snapshot["window_start"],
        snapshot["window_end"],
    )
    tags = {
        "airflow.dag_id": trigger["dag_id"],
        "airflow.run_id": trigger["run_id"],
        "airflow.run_type": trigger["run_type"],
        "trigger.by": trigger["triggered_by"],
        "trigger.reason": trigger["reason"],
        "trigger.drifted_features": ",".join(trigger["drifted_features"]),
        "trigger.report_uri": trigger["report_uri"],
        "git_commit": commit,
        "mlflow.source.git.commit": commit,
        "data_digest": snapshot["data_digest"],
        "train_status": "running",
    }
    return _TrainRun(mlflow, cfg, training, holdout, baselines, _dataset_source(snapshot), tags)


def _log_parent(run: _TrainRun, snapshot: dict) -> dict:
    """Log the parent run's parameters, window, datasets and baselines; the datasets' digests."""
    cfg, dataset, settings, mlflow = run.cfg, run.cfg.dataset, snapshot["settings"], run.mlflow
    mlflow.log_params(
        {
            "training_window_days": snapshot["window_days"],
            "window_start": snapshot["window_start"],
            "window_end": snapshot["window_end"],
            "model_families": ",".join(settings["model_families"]),
            "search_iterations": settings["search_iterations"],
            "force_promote": settings["force_promote"],
            "cv_splits": cfg.model.cv_splits,
            "holdout_fraction": cfg.model.holdout_fraction,
            "random_seed": cfg.model.random_seed,
            "promotion_metric": cfg.promotion.metric,
            "features": ",".join(dataset.features),
            "calendar_features": ",".join(dataset.calendar_features),
            "label": f"{dataset.label.source_column} +{dataset.label.steps_ahead} x {dataset.frequency}",
            "n_training": len(run.training),
            "n_holdout": len(run.holdout),
            "batch_count": len(snapshot["batch_ids"]),
        }
    )
    mlflow.log_dict({"batch_ids": snapshot["batch_ids"], **snapshot}, "data/window.json")
    digests = _log_datasets(mlflow, run.training, run.holdout, dataset, run.source)
    _log_baselines(run)
    mlflow.log_metric("training_positive_rate", run.baselines["positive_rate"])
    return digests


def _log_baselines(run: _TrainRun) -> None:
    run.mlflow.log_metrics(_flat_metrics("persistence_", run.baselines["persistence"]))
    run.mlflow.log_metrics(_flat_metrics("base_rate_", run.baselines["base_rate"]))


def _train_family(run: _TrainRun, family: str, search_iterations: int) -> tuple[dict, object]:
    """Search one family in a child run: (candidate summary, fitted model or None if skipped or failed)."""
    mlflow, cfg = run.mlflow, run.cfg
    with mlflow.start_run(run_name=family, nested=True, tags={**run.tags, "family": family}) as child:
        mlflow.log_params({"family": family, "search_iterations": search_iterations, "n_training": len(run.training)})
        _log_datasets(mlflow, run.training, run.holdout, cfg.dataset, run.source)
        _log_baselines(run)
        reason = skip_reason(family, len(run.training), cfg)
        if reason:
            log.info(reason)
            mlflow.set_tags({"candidate_status": "skipped", "skip_reason": reason})
            return {"family": family, "status": "skipped", "reason": reason, "run_id": child.info.run_id}, None
        t0 = time.monotonic()
        try:
            searcher = search(family, run.training, cfg.dataset, cfg, search_iterations)
        except Exception as exc:  # one family's failure (e.g. a one-class fold) is not the search's
            reason = _record_family_failure(mlflow, family, exc)
            return {"family": family, "status": "failed", "reason": reason, "run_id": child.info.run_id}, None
        fit_seconds = time.monotonic() - t0
        candidate = _log_search(run, family, searcher, fit_seconds)
        return {"family": family, "status": "trained", "run_id": child.info.run_id, **candidate}, (
            searcher.best_estimator_
        )


def _log_search(run: _TrainRun, family: str, searcher, fit_seconds: float) -> dict:
    """Log a finished search (best parameters, CV and holdout metrics, plots) in the current run;
    the candidate's scores."""
    from mlops.training.metrics import classification_metrics

    mlflow, cfg, holdout = run.mlflow, run.cfg, run.holdout
    label, threshold = cfg.dataset.label.name, cfg.model.decision_threshold
    proba = searcher.best_estimator_.predict_proba(holdout[model_columns(cfg.dataset)])[:, 1]
    holdout_metrics = classification_metrics(holdout[label], proba, threshold)
    best_params = {k.removeprefix("model__"): v for k, v in searcher.best_params_.items()}
    mlflow.log_params({f"best_{k}": v for k, v in best_params.items()})
    mlflow.log_metrics({f"cv_{cfg.promotion.metric}": float(searcher.best_score_), "search_seconds": fit_seconds})
    mlflow.log_metrics(_flat_metrics("", holdout_metrics))
    mlflow.log_dict(
        {
            "params": [{k: str(v) for k, v in p.items()} for p in searcher.cv_results_["params"]],
            "mean_test_score": [float(s) for s in searcher.cv_results_["mean_test_score"]],
        },
        "search/cv_results.json",
    )
    _log_plots(mlflow, holdout[label], proba, threshold, f"{family} (holdout)")
    mlflow.set_tag("candidate_status", "trained")
    log.info(
        "%s: cv %s %.4f, holdout %s, %.1fs",
        family,
        cfg.promotion.metric,
        searcher.best_score_,
        holdout_metrics,
        fit_seconds,
    )
    return {
        "cv_score": float(searcher.best_score_),
        "holdout": holdout_metrics,
        "best_params": {k: str(v) for k, v in best_params.items()},
        "search_seconds": round(fit_seconds, 1),
    }


def _choose(mlflow, candidates: list[dict]) -> dict:
    """Mark failed child runs FAILED; the trained candidate with the best CV score (ties: the
    earlier family in MODEL_FAMILIES). Raises AirflowFailException when none was trained."""
    import numpy as np

    for failed in (c for c in candidates if c["status"] == "failed"):
        mlflow.MlflowClient().set_terminated(failed["run_id"], status="FAILED")
    trained = [c for c in candidates if c["status"] == "trained"]
    if not trained:
        from airflow.sdk.exceptions import AirflowFailException

        mlflow.set_tag("train_status", "failed")
        raise AirflowFailException(f"no candidate was trained: {[c.get('reason') for c in candidates]}")
    best = max(trained, key=lambda c: (np.nan_to_num(c["cv_score"], nan=-np.inf), -MODEL_FAMILIES.index(c["family"])))
    log.info("chosen: %s (best cross-validated %s)", best["family"], get_config().promotion.metric)
    return best


def _log_chosen(run: _TrainRun, run_id: str, model):
    """Log the chosen model and its reference profile in its child run; the model's ModelInfo."""
    from mlops.monitoring.profile import PROFILE_ARTIFACT_PATH, PROFILE_FILE

    mlflow, dataset = run.mlflow, run.cfg.dataset
    with mlflow.start_run(run_id=run_id, nested=True):
        model_info = log_model(mlflow, model, run.training[model_columns(dataset)].head(5))
        profile = reference_profile(model, run.training, run.holdout, dataset)
        mlflow.log_dict(profile, f"{PROFILE_ARTIFACT_PATH}/{PROFILE_FILE}")
        mlflow.set_tag("chosen", "true")
    return model_info


def _candidates_result(best: dict, model_info, candidates: list[dict]) -> dict:
    """The chosen candidate (with its model URI) and every candidate's summary, for XCom."""
    from mlops.training.metrics import METRICS

    return {
        "chosen": {
            "family": best["family"],
            "run_id": best["run_id"],
            "model_uri": model_info.model_uri,
            "cv_score": best["cv_score"],
            "holdout": best["holdout"],
        },
        "candidates": [
            {k: c.get(k) for k in ("family", "status", "reason", "run_id", "cv_score", "search_seconds")}
            | {f"holdout_{m}": c.get("holdout", {}).get(m) for m in METRICS}
            for c in candidates
        ],
    }


def log_model(mlflow, model, input_example):
    """Log the pipeline with signature and input example; self-contained (calendar code by value)."""
    import cloudpickle
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from mlops import features

    # The pyfunc flavour serves predict (labels); consumers of the contract use predict_proba.
    signature = infer_signature(input_example, model.predict(input_example))
    cloudpickle.register_pickle_by_value(features)
    try:
        return mlflow.sklearn.log_model(
            model,
            name=MODEL_ARTIFACT,
            signature=signature,
            input_example=input_example,
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
        )
    finally:
        cloudpickle.unregister_pickle_by_value(features)


# ---------------------------------------------------------------- registry


def register(train_result: dict, snapshot: dict, trigger: dict) -> dict:
    """Register the chosen model (idempotent per training run), tag it, alias it `challenger`.

    `snapshot`: the window the model was trained on (window_start, window_end, batch_ids, data_digest).
    """
    from mlops.io.connections import configure_mlflow
    from mlops.monitoring.performance import HOLDOUT_METRICS_TAG
    from mlops.training.metrics import METRICS

    cfg = get_config()
    name = cfg.model.registered_name
    mlflow = configure_mlflow()
    client = mlflow.MlflowClient()
    chosen = train_result["chosen"]
    existing = client.search_model_versions(f"name = '{name}' and run_id = '{chosen['run_id']}'")
    if existing:
        version = existing[0]
        log.info("version %s of %s already registered from run %s", version.version, name, chosen["run_id"])
    else:
        version = mlflow.register_model(chosen["model_uri"], name)
    if not client.get_registered_model(name).description:
        client.update_registered_model(name, description=_model_description(cfg))
    # Few tags (MLflow shows them inline on the version): what the UI and drift_check read.
    # The lineage goes to the version's description and the train run's artifact.
    tags = {
        "family": chosen["family"],
        "window_start": snapshot["window_start"],
        "window_end": snapshot["window_end"],
        HOLDOUT_METRICS_TAG: json.dumps({m: chosen["holdout"][m] for m in METRICS}),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version.version, key, value)
    lineage = {
        "model_name": name,
        "version": str(version.version),
        "data_digest": snapshot["data_digest"],
        "batch_ids": snapshot["batch_ids"],
        "training_end": train_result["training_end"],
        "train_parent_run_id": train_result["parent_run_id"],
        "airflow": {"dag_id": trigger["dag_id"], "run_id": trigger["run_id"], "triggered_by": trigger["triggered_by"]},
        "trigger_reason": trigger["reason"],
        "holdout": chosen["holdout"],
    }
    client.log_dict(train_result["parent_run_id"], lineage, REGISTRATION_ARTIFACT)
    client.update_model_version(
        name, version.version, description=_version_description(train_result, snapshot, trigger, cfg)
    )
    from mlops.io.registry import CHALLENGER

    client.set_registered_model_alias(name, CHALLENGER, version.version)
    log.info("registered %s version %s, alias challenger", name, version.version)
    return {"model_name": name, "version": str(version.version), "run_id": chosen["run_id"]}


def _version_description(train_result: dict, snapshot: dict, trigger: dict, cfg: PipelineConfig) -> str:
    """A registered version's description: family, trigger, window, data and where the lineage is."""
    chosen = train_result["chosen"]
    return (
        f"{chosen['family']} trained by {trigger['dag_id']} run {trigger['run_id']} ({trigger['triggered_by']}, "
        f"reason: {trigger['reason']}) on observations {snapshot['window_start']}..{snapshot['window_end']} "
        f"({train_result['n_training']} training rows, {train_result['n_holdout']} holdout rows; "
        f"{len(snapshot['batch_ids'])} batches, data digest {snapshot['data_digest']}). "
        f"Holdout {cfg.promotion.metric}: {chosen['holdout'].get(cfg.promotion.metric.removeprefix('neg_'))}. "
        f"Lineage: artifact `{REGISTRATION_ARTIFACT}` of MLflow run {train_result['parent_run_id']}."
    )


# MLflow's UI opens an experiment in its GenAI view unless this tag says it trains models.
EXPERIMENT_KIND_TAG = ("mlflow.experimentKind", "custom_model_development")


def _model_description(cfg: PipelineConfig) -> str:
    """One paragraph on what the registered model predicts and how its aliases are set."""
    label = cfg.dataset.label
    return (
        f"Predicts {label.name} ({label.source_column} {label.steps_ahead} x {cfg.dataset.frequency} ahead) "
        f"for the data set {cfg.dataset.name}. Trained by the Airflow DAG 'train'; the alias 'champion' "
        "is moved only by its promote task (evidence on a paired holdout test) or by rollback_champion."
    )


def describe_experiment(mlflow, experiment_id: str, cfg: PipelineConfig) -> str:
    """Tag the experiment so that MLflow's UI opens it in the model-training view, give it a
    description (`mlflow.note.content`), and log its direct link; returns that link."""
    client = mlflow.MlflowClient()
    client.set_experiment_tag(experiment_id, *EXPERIMENT_KIND_TAG)
    client.set_experiment_tag(experiment_id, "mlflow.note.content", _model_description(cfg))
    link = f"{mlflow.get_tracking_uri().rstrip('/')}/#/experiments/{experiment_id}"
    log.info("MLflow experiment: %s", link)
    return link
