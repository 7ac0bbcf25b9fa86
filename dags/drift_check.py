"""
### Drift check

Compares recent data with the data the **champion** model was trained on, measures how the
champion actually performs now that the truth has arrived, and triggers the `train` DAG
when the data-set rule fires.

1. **champion**: resolves `models:/<model.registered_name>@champion` in MLflow and the
   reference profile of its training data (artifact `reference/reference_profile.json` of
   its run). No champion yet: the run is skipped (the log says so).
2. **measure**: the window is the last `drift.window_days` days up to the latest observation
   in the warehouse (replayed history is fine). Per feature: PSI on the reference's decile
   bins and the Kolmogorov-Smirnov test (numeric) or PSI and the chi-square test
   (categorical), and the change of missing rate, each twice: against the whole reference
   (raw) and against the reference of the same months (`drift.season_key`) weighted by the
   window's own mix (the shift the season does not explain, which the rule uses while
   `drift.seasonal_adjustment` is true; months the reference lacks fall back to the whole
   reference, and the report says so). The champion's score distribution.
   Realized performance: the champion's predictions joined to the label that arrived
   `label.steps_ahead` periods later: accuracy, F1 and Brier against its holdout metrics
   (and the challenger's, where shadow predictions exist). Estimated performance: the same
   metrics expected from the champion's probabilities (confidence-based performance
   estimation), for the whole window and its part whose truth has not arrived, with the
   champion's holdout calibration (or "calibration unknown"). Minimums and plot buckets
   follow `dataset.frequency` (hourly data: daily points; daily data: weekly points); when
   too few labels arrived to judge, the log and the report say so. Rows go to the warehouse tables
   `drift` (one per feature) and `drift_runs` (one per run).
3. **report**: an HTML report with plots, stored at
   `s3://<bucket>/<reports_prefix>drift/<run id>/report.html` (URI in the task log).
4. **decide_retrain** / **trigger_train**: when the rule fires (a share of drifted features
   of at least `drift.drifted_feature_share`, or realized or estimated performance worse than
   holdout by more than `drift.performance_drop`; the reason says which), `train` is triggered with conf
   `{reason, drifted_features, report_uri}`, unless a train run is queued or
   running, or the last one was less than `drift.cooldown_hours` ago. A skipped trigger
   logs why, and the decision is stored in `drift_runs.retrain_decision`. `trigger_train` is
   Airflow's `TriggerDagRunOperator`: its "Triggered DAG" link (task details) opens the train
   run, whose id `drift__<drift run id>` is in its XCom `trigger_run_id`.

Params (manual runs) override the window and thresholds; empty means the configuration.

**Deadline**: a run not successful within `freshness.drift_check_max_hours` (24) of its
logical date (an Airflow `DeadlineAlert` on the run's logical date: when the schedule wanted
the check) raises an alert on the failure-alert channel (`alerts`): drift was not checked for
a day. Manual runs without a logical date carry no deadline.
"""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, task

from mlops.config import get_config
from mlops.dag_defaults import dag_default_args, drift_check_deadline
from mlops.monitoring.retrain import TRAIN_DAG_ID

# Threshold params: same names as the drift section of the configuration.
THRESHOLD_PARAMS = (
    "psi_threshold",
    "ks_pvalue",
    "chi2_pvalue",
    "missing_rate_change",
    "drifted_feature_share",
    "performance_drop",
    "min_labeled_predictions",
    "season_key",
    "seasonal_adjustment",
)


def _optional_number(name: str, description: str, integer: bool = False) -> Param:
    """An optional threshold param; the form shows the configured value it defaults to."""
    configured = getattr(get_config().drift, name)
    description = f"{description} Empty: drift.{name} = {configured}."
    return Param(None, type=["null", "integer" if integer else "number"], minimum=0, description=description)


def _log_measure(result: dict) -> None:
    """One line per feature, then season, source, performance and rule notes, in the task log."""
    for note in result["season"]["notes"]:
        print(f"season: {note}")
    print(f"feature counts from {result['source']['kind']}: " + "; ".join(result["source"]["notes"]))
    for feature in result["features"]:
        status = "DRIFT" if feature["drifted"] else "ok"
        raw, seasonal = feature["raw"], feature["seasonal"]
        print(
            f"{status:5} {feature['feature']} ({feature['basis']}): raw PSI {raw['psi']}, {feature['test']} "
            f"p={raw['p_value']}; not explained by season: PSI {seasonal['psi']}, p={seasonal['p_value']}; "
            f"missing {feature['reference_missing_rate']:.3f} -> {feature['current_missing_rate']:.3f}"
        )
    for note in result["performance"]["notes"]:
        print(f"performance: {note}")
    print(f"performance: champion {result['performance']['calibration']['status']}")
    print(f"rule: {result['rule']['reason']}")


@task
def champion() -> dict:
    from airflow.sdk.exceptions import AirflowSkipException

    from mlops.monitoring.check import resolve_champion

    config = get_config()
    found = resolve_champion(config)
    if found is None:
        raise AirflowSkipException(
            f"no champion: models:/{config.model.registered_name}@champion does not exist yet, nothing to compare against"
        )
    print(f"reference: {config.model.registered_name} version {found['version']}, profile {found['profile_uri']}")
    return found


@task
def measure(champion: dict, params=None, run_id=None) -> dict:
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from mlops.monitoring import check as monitoring
    from mlops.monitoring.drift import Thresholds

    config = get_config()
    if params.get("window_end"):
        import pandas as pd

        try:
            pd.Timestamp(params["window_end"])
        except ValueError as exc:
            raise AirflowFailException(f"param window_end {params['window_end']!r} is not a timestamp: {exc}") from None
    thresholds = Thresholds.from_config(config.drift, {k: params.get(k) for k in THRESHOLD_PARAMS})
    window_days = params.get("window_days") or config.drift.window_days
    result = monitoring.measure(config, champion, run_id, window_days, params.get("window_end"), thresholds)
    if result is None:
        raise AirflowSkipException(f"no observations in the warehouse window of {window_days} days: nothing to check")
    _log_measure(result)
    return monitoring.summary(result)


@task
def report(summary: dict) -> str:
    import json

    from mlops.health.model import report_view_url
    from mlops.monitoring import check as monitoring
    from mlops.monitoring import drift_report

    config = get_config()
    result = json.loads(monitoring.get_object_text(config, summary["result_uri"]))
    key = summary["report_uri"].removeprefix(f"s3://{config.storage.bucket}/")
    uri = monitoring.put_object(config, key, drift_report.render(result), "text/html")
    print(f"drift report: {uri}\nopen it in the Model health view: {report_view_url(uri)}")
    return uri


@task.short_circuit
def decide_retrain(summary: dict, report_uri: str, params=None, ti=None):
    """The train run to create (run id and conf) when train should run now; False skips trigger_train."""
    import datetime as dt

    from mlops.monitoring import check as monitoring
    from mlops.monitoring import retrain

    config = get_config()
    cooldown = params.get("cooldown_hours")
    cooldown = config.drift.cooldown_hours if cooldown is None else cooldown
    in_flight = retrain.train_runs_in_flight(ti) if summary["fired"] else 0
    last = retrain.last_run_time() if summary["fired"] and not in_flight else None
    decision, why = retrain.decide(summary["fired"], in_flight, last, dt.datetime.now(dt.UTC), cooldown)
    run_id = retrain.train_run_id(summary["drift_run_id"]) if decision == "trigger" else None
    monitoring.record_decision(summary["drift_run_id"], decision, why, run_id)
    if decision != "trigger":
        print(f"train not triggered ({decision}): {why}")
        return False
    conf = retrain.train_conf({**summary, "report_uri": report_uri})
    print(f"triggering {TRAIN_DAG_ID} as run {run_id}: {conf['reason']}")
    return {"run_id": run_id, "conf": conf}


@dag(
    schedule=get_config().schedules.drift_check,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # two runs at once could both decide to trigger train
    tags=["mlops", "monitoring"],
    default_args=dag_default_args(),
    deadline=drift_check_deadline(),
    doc_md=__doc__,
    params={
        "window_days": _optional_number("window_days", "Days of recent data to compare.", integer=True),
        "window_end": Param(
            None,
            type=["null", "string"],
            description="End of the window, 'YYYY-MM-DD HH:MM:SS' UTC (default: the latest observation).",
        ),
        "psi_threshold": _optional_number("psi_threshold", "PSI at or above which a feature may drift."),
        "ks_pvalue": _optional_number("ks_pvalue", "KS p-value below which a numeric shift is significant."),
        "chi2_pvalue": _optional_number(
            "chi2_pvalue", "Chi-square p-value below which a categorical shift is significant."
        ),
        "missing_rate_change": _optional_number(
            "missing_rate_change", "Missing-rate change beyond which a feature drifts."
        ),
        "drifted_feature_share": _optional_number(
            "drifted_feature_share", "Share of drifted features that fires the rule."
        ),
        "performance_drop": _optional_number("performance_drop", "Realized-vs-holdout drop that fires the rule."),
        "min_labeled_predictions": _optional_number(
            "min_labeled_predictions", "Labeled predictions needed to judge performance.", integer=True
        ),
        "cooldown_hours": _optional_number(
            "cooldown_hours", "No new train run within this many hours of the last one."
        ),
        "season_key": Param(
            None,
            type=["null", "string"],
            enum=[None, "month", "quarter", "none"],
            description="Calendar stratum matching the window with the reference (default: drift.season_key).",
        ),
        "seasonal_adjustment": Param(
            None,
            type=["null", "boolean"],
            description="true: drift is the shift the season does not explain; false: the raw shift (default: config).",
        ),
    },
)
def drift_check():
    """Wiring only: each task above holds its step."""
    summary = measure(champion())
    request = decide_retrain(summary, report(summary))
    # The standard operator: its "Triggered DAG" link opens the train run from this run's grid.
    # Run id and conf are items of decide_retrain's return value (a JSON string for conf,
    # which the operator parses).
    trigger_train = TriggerDagRunOperator(
        task_id="trigger_train",
        trigger_dag_id=TRAIN_DAG_ID,
        trigger_run_id="{{ ti.xcom_pull(task_ids='decide_retrain')['run_id'] }}",
        conf="{{ ti.xcom_pull(task_ids='decide_retrain')['conf'] | tojson }}",
        skip_when_already_exists=True,  # a retry finds its run there: skipped, not doubled
    )
    request >> trigger_train


drift_check()
