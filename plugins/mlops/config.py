"""Load and validate include/config/pipeline.yaml, with environment overrides.

Override any key with MLOPS__<SECTION>__<KEY>[__<SUBKEY>]=<yaml value>, for example
MLOPS__DRIFT__PSI_THRESHOLD=0.25. Set MLOPS_CONFIG to use another file.
Errors name the offending key, e.g. "promotion.min_improvement: Input should be a valid number".
"""

from __future__ import annotations

import functools
import os
import zoneinfo
from pathlib import Path
from typing import Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "include" / "config" / "pipeline.yaml"
ENV_PREFIX = "MLOPS__"


class ConfigError(ValueError):
    """The configuration file or an override is invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(_Strict):
    type: Literal["datetime", "float", "int", "string"]
    required: bool = False
    min: float | None = None
    max: float | None = None
    allowed: list[int | float | str] | None = None
    on_out_of_range: Literal["drop_row", "set_null"] = "drop_row"
    # Strings that mean "no value" in this column (replaces dataset.missing_values for it).
    missing_values: list[str] | None = None


class LabelSpec(_Strict):
    name: str
    source_column: str
    positive_values: list[int | float | str]
    steps_ahead: int = Field(ge=1)


class DatasetConfig(_Strict):
    name: str
    columns: dict[str, ColumnSpec]
    time_column: str
    time_format: str
    # Zone of naive times in the files (IANA name); offsets in the data (%z) are honoured.
    # The warehouse stores UTC.
    time_zone: str = "UTC"
    # Strings that mean "no value" (exactly, case included); nothing else is missing.
    missing_values: list[str] = [""]
    frequency: str
    ignored_columns: list[str] = []
    label: LabelSpec
    features: list[str] = Field(min_length=1)
    calendar_features: list[Literal["hour", "dayofweek", "month"]] = []
    # The example file `make demo` replays (relative to the repository root), and where its
    # history ends: the first drop is everything before this period ("2015-07", "2021-Q3").
    example_file: str | None = None
    example_history_until: str | None = None

    @model_validator(mode="after")
    def _columns_exist(self):
        known = set(self.columns)
        problems = []
        if self.time_column not in known:
            problems.append(f"time_column {self.time_column!r} is not in dataset.columns")
        elif self.columns[self.time_column].type != "datetime":
            problems.append(f"time_column {self.time_column!r} must have type datetime")
        if self.label.source_column not in known:
            problems.append(f"label.source_column {self.label.source_column!r} is not in dataset.columns")
        for name in self.features:
            if name not in known:
                problems.append(f"features: {name!r} is not in dataset.columns")
            if name in self.ignored_columns:
                problems.append(f"features: {name!r} is listed in ignored_columns")
        for name in self.ignored_columns:
            if name not in known:
                problems.append(f"ignored_columns: {name!r} is not in dataset.columns")
        try:
            zoneinfo.ZoneInfo(self.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            problems.append(f"time_zone {self.time_zone!r} is not an IANA time zone")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def missing_values_of(self, column: str) -> list[str]:
        """The strings read as missing in `column` (its own list, else the data set's)."""
        own = self.columns[column].missing_values
        return list(own if own is not None else self.missing_values)

    @property
    def numeric_features(self) -> list[str]:
        return [c for c in self.features if self.columns[c].type in ("float", "int")]

    @property
    def categorical_features(self) -> list[str]:
        return [c for c in self.features if self.columns[c].type == "string"]


class StorageConfig(_Strict):
    bucket: str
    landing_prefix: str
    raw_prefix: str
    quarantine_prefix: str
    predictions_prefix: str
    reports_prefix: str
    mlflow_bucket: str


class ConnectionsConfig(_Strict):
    object_store: str
    warehouse: str
    mlflow: str


class ValidationConfig(_Strict):
    max_bad_row_fraction: float = Field(ge=0, le=1)
    min_rows: int = Field(ge=1)
    suite_file: str
    chunk_rows: int = Field(ge=1000)
    # Plausible time: a row later than the ingest time plus this, or earlier than
    # earliest_timestamp (UTC, "YYYY-MM-DD[ HH:MM:SS]"), breaks a row rule.
    future_tolerance_hours: float = Field(default=24, ge=0)
    earliest_timestamp: str | None = None


# The only list of model families (mlops.training.pipeline builds each; its order breaks CV-score ties).
ModelFamily = Literal["logistic_regression", "hist_gradient_boosting", "random_forest", "svm"]
MODEL_FAMILIES: tuple[str, ...] = get_args(ModelFamily)


class ModelConfig(_Strict):
    registered_name: str
    decision_threshold: float = Field(gt=0, lt=1)
    random_seed: int
    families: list[ModelFamily] = Field(min_length=1)
    search_iterations: int = Field(ge=1)
    cv_splits: int = Field(ge=2)
    holdout_fraction: float = Field(gt=0, lt=1)
    svm_max_rows: int = Field(ge=0)
    training_window_days: int = Field(ge=1)
    n_jobs: int = Field(default=1, ge=1)
    # Where train_candidates runs: in the Airflow worker's process, or in an isolated
    # container of `training_image` started through the Docker provider.
    training_runtime: Literal["process", "docker"] = "process"
    training_image: str = "mlops-airflow:latest"
    training_docker_url: str = "unix://var/run/docker.sock"
    # "host": the container reaches the services on the addresses the worker uses.
    training_network_mode: str = "host"
    # Fewer rows than these in the training part / the holdout of the window: train fails and says so.
    min_training_rows: int = Field(default=100, ge=1)
    min_holdout_rows: int = Field(default=30, ge=1)


class ScoringConfig(_Strict):
    chunk_rows: int = Field(ge=1)
    # Mapped score tasks of one batch_score run that may run at once (1 for a SQLite warehouse,
    # which takes one writer at a time; more on PostgreSQL, where workers score in parallel).
    parallel_batches: int = Field(default=1, ge=1)
    # A run's batches are grouped into at most parallel_batches score tasks, a new group opened per
    # this many rows: a task pays its start and model loads once per group, not once per batch.
    rows_per_group: int = Field(default=200_000, ge=1)


class PromotionConfig(_Strict):
    metric: Literal["roc_auc", "f1", "accuracy", "neg_log_loss", "neg_brier"]
    min_improvement: float
    bootstrap_samples: int = Field(ge=100)
    confidence: float = Field(gt=0, lt=1)
    # The candidate must not be significantly worse than persistence on these (metrics.METRICS names).
    guard_metrics: list[Literal["accuracy", "f1", "roc_auc", "log_loss", "brier"]] = ["brier"]
    # Evidence: fewer positive / negative holdout rows than these -> outcome insufficient_evidence.
    min_holdout_positives: int = Field(default=30, ge=1)
    min_holdout_negatives: int = Field(default=30, ge=1)
    # Who decides the close calls (mlops.training.promotion.needs_approval): never = the gate alone;
    # borderline = a person, for the close calls; always = a person, for every promotion too.
    approval: Literal["never", "borderline", "always"] = "never"
    # No answer within this many hours keeps the champion.
    approval_timeout_hours: float = Field(default=24, gt=0)


class DriftConfig(_Strict):
    window_days: int = Field(ge=1)
    psi_threshold: float = Field(gt=0)
    ks_pvalue: float = Field(gt=0, lt=1)
    chi2_pvalue: float = Field(gt=0, lt=1)
    missing_rate_change: float = Field(ge=0, le=1)
    drifted_feature_share: float = Field(gt=0, le=1)
    performance_drop: float = Field(ge=0)
    min_labeled_predictions: int = Field(ge=1)
    cooldown_hours: float = Field(ge=0)
    # Season-aware reference (mlops.monitoring.drift.season_weighted): calendar stratum of the time column.
    season_key: Literal["month", "quarter", "none"] = "month"
    seasonal_adjustment: bool = True
    min_stratum_rows: int = Field(default=100, ge=1)
    season_neighbours: bool = True
    # Single-feature rule (mlops.monitoring.drift.severe_features): a drifted numeric feature whose KS
    # distance reaches this fires on its own; null = only the share rule.
    severe_ks: float | None = Field(default=None, gt=0, le=1)
    # Features' counts from the batch profiles stored at ingest (mlops.monitoring.batch_profile), not rows.
    from_profiles: bool = False
    # The performance metrics whose drop beyond performance_drop fires the rule (all are reported).
    performance_metrics: list[Literal["accuracy", "f1", "brier"]] = Field(
        default=["accuracy", "f1", "brier"], min_length=1
    )
    # Autocorrelated rows (mlops.monitoring.autocorrelation): KS and chi-square count a feature's rows
    # as n / tau independent ones, tau its integrated autocorrelation time estimated on the reference
    # at the data set's frequency; false = every row independent (the tests' textbook p-values).
    autocorrelation: bool = True


class SchedulesConfig(_Strict):
    train: str | None
    drift_check: str | None
    health_check: str | None
    ingest: str | None


class IngestConfig(_Strict):
    sensor_deferrable: bool = True
    sensor_poke_seconds: float = Field(gt=0)
    # The deferrable sensor pokes this long in its own process before it defers (see mlops.ingest.sensors).
    sensor_poke_before_defer_seconds: float = Field(default=30, ge=0)
    sensor_timeout_minutes: float = Field(gt=0)
    max_files_per_run: int = Field(ge=1)
    max_mapped_tasks: int = Field(ge=1)
    # Landing keys ending with one of these (case-insensitive) are files to ingest; folder
    # markers, zero-length objects and other keys never wake a run.
    suffixes: list[str] = Field(default=[".csv", ".csv.gz"], min_length=1)
    # A row whose timestamp is stored already with other values: keep the stored row (keep_first)
    # or let the later batch win (replace); either way it is counted, listed and recorded.
    on_conflict: Literal["keep_first", "replace"] = "keep_first"
    # PostgreSQL: load a file's rows while it is still being validated (mlops.ingest.load), in
    # one transaction committed only if validation passes; false: load after validation.
    load_during_validation: bool = True


class AlertsConfig(_Strict):
    channel: Literal["log", "email", "webhook"]
    email_to: list[str] = []
    webhook_url: str = ""


class FreshnessConfig(_Strict):
    # A batch_score run (queued when a batch is loaded) not done this long after it was
    # queued raises a deadline alert; so does a drift_check run not done within
    # drift_check_max_hours of its logical date (mlops.dag_defaults).
    max_minutes: float = Field(default=60, gt=0)
    drift_check_max_hours: float = Field(default=24, gt=0)


class TasksConfig(_Strict):
    retries: int = Field(2, ge=0)
    retry_delay_seconds: int = Field(30, ge=1)


class PipelineConfig(_Strict):
    dataset: DatasetConfig
    storage: StorageConfig
    connections: ConnectionsConfig
    validation: ValidationConfig
    model: ModelConfig
    scoring: ScoringConfig
    promotion: PromotionConfig
    drift: DriftConfig
    schedules: SchedulesConfig
    ingest: IngestConfig
    alerts: AlertsConfig
    tasks: TasksConfig = TasksConfig()
    freshness: FreshnessConfig = FreshnessConfig()


def _apply_env_overrides(raw: dict, environ: dict[str, str]) -> dict:
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        node = raw
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                raise ConfigError(f"{name}: {'.'.join(path)} does not name a key of the configuration")
            node = child
        node[path[-1]] = yaml.safe_load(value)
    return raw


def load_config(path: str | Path | None = None, environ: dict[str, str] | None = None) -> PipelineConfig:
    """Read, override and validate the configuration. Raises ConfigError naming the bad key."""
    path = Path(path or os.environ.get("MLOPS_CONFIG") or DEFAULT_CONFIG_PATH)
    environ = os.environ if environ is None else environ
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc}") from exc
    raw = _apply_env_overrides(raw, environ)
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {key}: {err['msg']}")
        raise ConfigError(f"{path}: invalid configuration\n" + "\n".join(lines)) from None


@functools.cache
def get_config() -> PipelineConfig:
    """The configuration of this process (read once)."""
    return load_config()
