"""
### Train

Trains the rain-in-4-hours model (every name, column and threshold comes from
`include/config/pipeline.yaml`) and decides, in a separate visible task, whether it replaces
the champion.

1. **snapshot**: the training window = the last `training_window_days` days of the warehouse
   table `observations` up to the newest row (`include/sql/training_window.sql`); its row
   count, batch ids and a content digest. Logs who or what triggered the run and why.
2. **train_candidates**: label = `Current_weather_condition` 4 hours later (gap-aware; the
   shipped `Future_weather_condition` is never used). Time-ordered split: the most recent
   `model.holdout_fraction` of rows is the holdout; the older rows are tuned with
   `TimeSeriesSplit`. Each family in `model_families` is one scikit-learn Pipeline
   (calendar features, imputation, scaling, estimator) tuned by a seeded randomized search.
   MLflow: one parent run, one child run per candidate with params, metrics, confusion matrix
   and calibration plot, dataset inputs (query, batch ids, digest), beside the persistence
   and base-rate baselines. The candidate with the best cross-validated score is logged with
   signature, input example and the reference profile drift_check uses. It runs in the
   worker, or with `model.training_runtime: docker` in an isolated container of
   `model.training_image` (Docker provider; connections passed as private environment).
3. **register**: a new version of the registered model, alias `challenger`, with a few tags
   (family, training window, `holdout_metrics` as JSON), a description of what it was trained
   on, and its lineage (data digest, batch ids) as the run's artifact `registry/model_version.json`.
4. **decide**: challenger vs `champion` and both baselines on the same holdout. Promoted
   only with evidence: at least `promotion.min_holdout_positives`/`min_holdout_negatives`
   holdout rows of each class (else `insufficient_evidence`), the paired bootstrap CI of the
   difference above 0 against each baseline and the champion (by more than
   `promotion.min_improvement`), and not significantly worse than persistence on
   `promotion.guard_metrics`; the first champion too. `force_promote` overrides (recorded).
   `decide` takes the gate's decision; `route` sends it to **approval** (Airflow's
   HITLOperator, the UI's "Required actions") when `promotion.approval` asks a person
   (`borderline`: the close calls, a CI straddling its margin or a guard metric worse but not
   significantly; `always`: every promotion too; `never`, the default: nobody). No answer
   within `promotion.approval_timeout_hours` keeps the champion. **promote** carries the
   decision out with the answer and who gave it: written as the model's `pending_decision`
   tag before any alias moves, so a retry completes it; then its summary goes to the
   version's description (outcome, reason, scores, CIs, holdout counts) with a few tags
   (`decision.action`, `decision.outcome`, `decision.at`, and the approval's answer and who
   gave it), the whole decision to the run's artifact `promotion/decision.json` and to the
   warehouse table `model_decisions`.

**Triggers**: the schedule (`schedules.train`), a manual run (the form below: empty = the
configured value), or drift_check with conf `{"reason": ..., "drifted_features": [...],
"report_uri": ...}`. One run at a time (`max_active_runs=1`): a second trigger waits.
Undo a promotion with the `rollback_champion` DAG.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import Param, dag, get_current_context, task

from mlops.config import MODEL_FAMILIES, get_config
from mlops.dag_defaults import dag_default_args
from mlops.training.promotion import APPROVE, KEEP

_cfg = get_config()


def _train_candidates(window):
    """The search, in the worker or (model.training_runtime=docker) in an isolated container."""
    options = {"task_id": "train_candidates", "retries": 1, "execution_timeout": timedelta(minutes=45)}
    if _cfg.model.training_runtime == "docker":
        from mlops.training.container import PipelineContainerOperator

        return PipelineContainerOperator(
            function="mlops.training.pipeline:train_from_snapshot", job_input={"snapshot": window}, **options
        ).output

    @task(**options)
    def train_candidates(window: dict) -> dict:
        from mlops.training.pipeline import train_from_snapshot

        return train_from_snapshot(window)

    return train_candidates(window)


def _context() -> tuple[dict, dict]:
    """(settings, trigger) of the running DAG run."""
    from mlops.training.pipeline import resolve_settings, trigger_info

    ctx = get_current_context()
    params = dict(ctx["params"])
    return resolve_settings(params), trigger_info(params, ctx["dag_run"])


# What the promote task returns (XCom) of the completed decision.
PROMOTE_RESULT_KEYS = (
    "outcome",
    "promoted",
    "reason",
    "candidate_version",
    "champion_before",
    "champion_after",
    "metric",
    "scores",
    "test",
    "baseline_tests",
    "guard_tests",
    "holdout_counts",
    "holdout_metrics",
    "approval",
)


@task
def snapshot() -> dict:
    from mlops.training.pipeline import describe_window, git_commit, load_window, resolve_window

    settings, trigger = _context()
    print(
        f"trigger: {trigger['triggered_by']}; reason: {trigger['reason']}; "
        f"drifted features: {trigger['drifted_features'] or '-'}; report: {trigger['report_uri'] or '-'}"
    )
    print(f"settings: {settings}")
    window = resolve_window(settings["training_window_days"])
    described = describe_window(load_window(window), get_config().dataset)
    print(
        f"window {window['window_start']}..{window['window_end']}: {described['rows']} rows, "
        f"{described['labelled_rows']} labelled, digest {described['data_digest']}"
    )
    # The settings and the trigger travel with the snapshot: train_candidates may run in a
    # container (model.training_runtime), where there is no Airflow context to read them from.
    return {**window, **described, "settings": settings, "trigger": {**trigger, "git_commit": git_commit()}}


@task
def register(window: dict, trained: dict) -> dict:
    from mlops.training import pipeline as training

    _, trigger = _context()
    return training.register(trained, window, trigger)


@task
def decide(window: dict, trained: dict, registered: dict) -> dict:
    from mlops.training.promotion import propose

    settings, trigger = _context()
    decision = propose(window, trained, registered, settings, trigger)
    print(f"gate: {decision['outcome']}: {decision['reason']}")
    return decision


@task.branch
def route(decision: dict) -> str:
    """The approval task only for a decision that waits for a person (promotion.approval)."""
    waits = not decision.get("final") and decision.get("approval", {}).get("required")
    return "approval" if waits else "promote"


def _approval() -> HITLOperator:
    """A person's answer for a decision that waits for one (Airflow's human-in-the-loop operator)."""
    return HITLOperator(
        task_id="approval",
        subject="Promote {{ ti.xcom_pull(task_ids='decide')['model_name'] }} "
        "v{{ ti.xcom_pull(task_ids='decide')['candidate_version'] }} to champion?",
        body="{{ ti.xcom_pull(task_ids='decide')['approval']['body'] }}",
        options=[APPROVE, KEEP],
        defaults=[KEEP],
        response_timeout=timedelta(hours=_cfg.promotion.approval_timeout_hours),
    )


@task(trigger_rule="none_failed_min_one_success")
def promote(decision: dict) -> dict:
    from mlops.training.promotion import complete

    answer = get_current_context()["ti"].xcom_pull(task_ids="approval")
    decision = complete(decision, answer)
    print(f"{decision['outcome']}: {decision['reason']}")
    return {k: decision.get(k) for k in PROMOTE_RESULT_KEYS}


@dag(
    schedule=_cfg.schedules.train,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["mlops", "train"],
    default_args=dag_default_args(),
    doc_md=__doc__,
    params={
        "training_window_days": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            description=f"Days of observations up to the newest one. Empty: model.training_window_days ({_cfg.model.training_window_days}).",
        ),
        "model_families": Param(
            None,
            type=["null", "array"],
            items={"type": "string", "enum": list(MODEL_FAMILIES)},
            description=f"Candidate families. Empty: model.families ({', '.join(_cfg.model.families)}).",
        ),
        "search_iterations": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            description=f"Random-search budget per family. Empty: model.search_iterations ({_cfg.model.search_iterations}).",
        ),
        "force_promote": Param(
            False, type="boolean", description="Promote even if the gate refuses (recorded as forced)."
        ),
        "reason": Param(None, type=["null", "string"], description="Why this run (drift_check sets it)."),
        "drifted_features": Param(None, type=["null", "array"], description="Set by drift_check."),
        "report_uri": Param(None, type=["null", "string"], description="Drift report (set by drift_check)."),
    },
)
def train():
    """Wiring only: each task above holds its step."""
    approval = _approval()
    window = snapshot()
    trained = _train_candidates(window)
    registered = register(window, trained)
    decision = decide(window, trained, registered)
    promoted = promote(decision)
    route(decision) >> [approval, promoted]
    approval >> promoted


train()
