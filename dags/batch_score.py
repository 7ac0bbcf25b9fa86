"""
### Batch score

Scores new observations with the registered model's **champion** and stores the predictions,
versioned, in the warehouse (`predictions` table) and as Parquet in the object store
(`predictions/model_name=<name>/model_version=<v>/role=<role>/batch_id=<id>/part-00000.parquet`).

**When it runs**

* when `ingest` updates the `observations` asset: every loaded batch that has no predictions
  yet from the current champion (or challenger) version is scored;
* manually, with params: `batch_id` replays one batch, or `start` / `end` (UTC, end exclusive)
  backfill every batch with observations in that range. Replayed batches are replaced.

**Policy**

* `models:/<name>@champion` (and `@challenger`) are resolved to version numbers once per run;
  every row records the model name, version, role, threshold and batch id.
* No champion yet: the run is skipped with a log line, not failed.
* A `challenger` alias (other than the champion's version) is scored in the shadow with
  `role='challenger'`: stored apart, never served, there for drift_check to compare.
* The run's batches are planned into at most `scoring.parallel_batches` groups by a row budget
  (`scoring.rows_per_group`); each group is one `score` task that loads each model once and
  scores its batches in order, each committed on its own. A failing batch does not stop the
  others; the task fails at the end, and its retry skips the batches already done.
* Rerunning a batch with the same model replaces its rows (one short transaction, predicting
  happens before it) and its Parquet file: never duplicates. The file is staged first and
  copied to its final key only after the rows are committed; the next run removes staging
  objects of killed attempts. A new version adds its own set.
* A batch whose columns or types do not match the model's signature fails without retry,
  naming the columns, and nothing of it is written.
* Each batch is read in chunks of `scoring.chunk_rows` (include/config/pipeline.yaml).

**Freshness deadline**: a run not successful within `freshness.max_minutes` of being queued
(an Airflow `DeadlineAlert` on the run's `queued_at`, which for an asset-triggered run is when
ingest loaded the batch) raises an alert on the failure-alert channel (`alerts`).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from mlops.assets import OBSERVATIONS, PREDICTIONS
from mlops.config import get_config
from mlops.dag_defaults import dag_default_args, scoring_deadline


@dag(
    schedule=[OBSERVATIONS],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    # One run at a time: each observations event queues a run that re-plans the backlog, and
    # overlapping runs scored the same batches twice and competed for the warehouse.
    max_active_runs=1,
    tags=["mlops", "scoring"],
    default_args=dag_default_args(),
    deadline=scoring_deadline(),
    doc_md=__doc__,
    params={
        "batch_id": Param(None, type=["null", "string"], description="Replay: score this batch again."),
        "start": Param(
            None,
            type=["null", "string"],
            description="Backfill: from this time (UTC, inclusive).",
        ),
        "end": Param(
            None,
            type=["null", "string"],
            description="Backfill: until this time (UTC, exclusive).",
        ),
    },
)
def batch_score():
    @task
    def plan(params: dict | None = None, dag_run=None) -> list[dict]:
        """The versions behind the aliases and the run's batches in groups, in one task (a task
        less between a new file and its predictions): [{"group": ..., "models": ...}], the
        arguments of each score task. No champion yet: skipped, and so is scoring."""
        from airflow.sdk.exceptions import AirflowSkipException

        from mlops.config import get_config
        from mlops.scoring.batch import batch_sizes, plan_batches, plan_groups, remove_staging, resolve_models

        models = resolve_models()
        if models is None:
            raise AirflowSkipException("no model has the champion alias yet: nothing to score with")
        print(f"scoring with {models}")
        # One run at a time (max_active_runs=1): staging objects older than this run are
        # leftovers of killed attempts.
        remove_staging(dag_run.start_date)
        batches = plan_batches(models, params.get("batch_id"), params.get("start"), params.get("end"))
        scoring = get_config().scoring
        groups = plan_groups(
            batches, batch_sizes() if batches else {}, scoring.parallel_batches, scoring.rows_per_group
        )
        print(f"{len(batches)} batch(es) to score in {len(groups)} group(s): {groups}")
        return [{"group": group, "models": models} for group in groups]

    # One mapped task per group of batches (scoring.parallel_batches at most, planned by a row
    # budget): each loads its models once and scores its batches in order, committing each.
    # How many run at once is scoring.parallel_batches too (a SQLite warehouse takes one
    # writer at a time; on PostgreSQL the workers share the backfill).
    @task(
        outlets=[PREDICTIONS],
        max_active_tis_per_dagrun=get_config().scoring.parallel_batches,
        map_index_template="{{ group_label }}",
    )
    def score(group: dict, models: dict, outlet_events=None, dag_run=None, ti=None) -> dict:
        from airflow.sdk import get_current_context

        from mlops.io import warehouse
        from mlops.scoring.batch import score_group

        get_current_context()["group_label"] = group["label"]  # names the mapped task in the UI
        # A retry skips the batches an earlier attempt of this run finished (scored since its start).
        since = dag_run.start_date.astimezone(pendulum.UTC).strftime(warehouse.TIMESTAMP_FORMAT)
        since = since if ti.try_number > 1 else None
        summary = score_group(group, models, since=since)
        print(f"scored {summary}")
        outlet_events[PREDICTIONS].extra = {
            "batches": summary["batches"],
            "model_name": models["model_name"],
            "versions": {o["role"]: o["model_version"] for o in summary["outputs"]},
            "rows": summary["rows"],
        }
        return summary

    score.expand_kwargs(plan())


batch_score()
