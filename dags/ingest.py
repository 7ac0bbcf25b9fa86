"""
### Ingest

Loads the CSV files (optionally gzipped) that upstream systems drop under the landing prefix
of the object store (`storage.bucket` / `storage.landing_prefix` in `include/config/pipeline.yaml`).
Nobody has to click: the DAG runs continuously, one run at a time, and each run starts by
**waiting for a landing object** with a deferrable sensor built on the Amazon provider
(`S3KeyTrigger` in the triggerer: no worker slot is held while waiting). The files found are spread over at most
`ingest.max_mapped_tasks` mapped `ingest_files` tasks (one file per task when few landed);
each file goes through:

1. streamed to a temporary file, hashed; batch id = hash of the key and the content checksum
   (the same file dropped twice is recognised through the `batches` table and not loaded twice);
2. copied to `raw/<batch_id>/` and the copy verified (size, and the ETag read or the MD5);
3. read in chunks and validated with the Great Expectations suite in `include/expectations/`;
4. loaded in one transaction (`batches` row + observations, deduplicated on the time column),
   or quarantined to `quarantine/<batch_id>/` with the raw file, `validation.json` and
   `report.html`; the landing object is removed only once the outcome is committed.

**Row policy** (`validation` in the configuration): rows with a missing required value, an
unparseable value, an out-of-range value (`on_out_of_range: drop_row`), a disallowed value or
a timestamp repeated with different values are dropped and reported; `on_out_of_range: set_null`
keeps the row and nulls the value (pressure 0 is a broken sensor). Exact duplicate rows collapse
to one. If more than `max_bad_row_fraction` of the rows are dropped, or the file is structurally
broken (empty, header only, wrong delimiter, missing/extra/renamed column, not UTF-8, corrupt
gzip, no valid row), the whole batch is quarantined and its task fails with the reason. A
failure raises an alert through `alerts.channel` (log, email or webhook).

A task with a quarantined file fails (after processing the other files of its group); a task
whose files added nothing new (all seen before) ends *skipped*. Then `announce_observations`
updates the `observations` asset, which schedules the downstream DAGs, if any task loaded new
rows, also when another file of the run (or of the same task) was quarantined: the event's
extra lists the new batches. It announces every loaded batch not announced yet (the
`batches.announced_at` mark), so a batch whose attempt died after its load is announced by the
retry or the next run; `mark_announced` sets the mark once the event exists. `profile_batches`
stores each loaded batch's profile (counts per day on fixed grids, table `batch_profiles`),
which drift_check merges instead of re-reading rows. `fail_if_a_file_failed` then fails the run if any `ingest_files`
task failed, so a quarantine never looks like a green run.

**Replay**: trigger with the param `object_key` set to a landing key, or to the raw file of an
earlier batch (`raw/<batch_id>/<file>` or `quarantine/<batch_id>/<file>`) to validate and load
it again (for example after changing the row policy).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from mlops.assets import OBSERVATIONS
from mlops.config import get_config
from mlops.dag_defaults import dag_default_args
from mlops.ingest.pipeline import sensor_pattern  # stdlib-only at import: the parse stays fast
from mlops.ingest.sensors import LandingObjectSensor

cfg = get_config()


@task.branch
def route(params=None) -> list[str]:
    """A replay goes straight to the named object; otherwise wait for landing objects."""
    if (params or {}).get("object_key"):
        return ["list_objects"]
    return ["wait_for_landing", "list_objects"]


def _landing_sensor() -> LandingObjectSensor:
    """The deferrable wait for a landing object (S3KeyTrigger through the Amazon provider)."""
    return LandingObjectSensor(
        task_id="wait_for_landing",
        aws_conn_id=cfg.connections.object_store,
        bucket_name=cfg.storage.bucket,
        bucket_key=sensor_pattern(),
        deferrable=cfg.ingest.sensor_deferrable,
        poke_before_defer=cfg.ingest.sensor_poke_before_defer_seconds,
        mode="poke" if cfg.ingest.sensor_deferrable else "reschedule",
        poke_interval=cfg.ingest.sensor_poke_seconds,
        timeout=cfg.ingest.sensor_timeout_minutes * 60,
        # Nothing landed for a while: the run ends skipped and @continuous starts the next one.
        soft_fail=True,
        # Airflow 3.3 fails a deferred task whose trigger fires within seconds of deferring when
        # the scheduler reads the deferring process's stale "success" after the resumed attempt
        # started (apache/airflow#72716). The retry pokes again and finds the file: retry after
        # one poke interval, not after tasks.retry_delay_seconds (30 s of a new file's freshness).
        retry_delay=timedelta(seconds=cfg.ingest.sensor_poke_seconds),
    )


@task(trigger_rule="none_failed_min_one_success")
def list_objects(params=None) -> list[list[str]]:
    """The objects to ingest, in groups: one mapped ingest_files task per group."""
    from mlops.ingest import pipeline as ingest_logic

    key = (params or {}).get("object_key")
    if key:
        if not ingest_logic.object_exists(key):
            raise AirflowFailException(f"replay: no object {key!r} in bucket {cfg.storage.bucket}")
        return [[key]]
    keys = ingest_logic.landing_keys(limit=cfg.ingest.max_files_per_run)
    print(f"{len(keys)} object(s) to ingest: {keys}")
    return ingest_logic.spread(keys, cfg.ingest.max_mapped_tasks)


@task(map_index_template="{{ files_label }}")
def ingest_files(object_keys: list[str]) -> None:
    """Raw copy, validation, then load or quarantine each object of the group."""
    from mlops.ingest import pipeline as ingest_logic

    context = get_current_context()
    more = f" (+{len(object_keys) - 1} more)" if len(object_keys) > 1 else ""
    context["files_label"] = ingest_logic.task_label(object_keys[0], more)
    outcome = ingest_logic.process_objects(object_keys)
    for summary in outcome["processed"]:
        print(f"ingested: {summary}")
    loaded = {
        "new_rows": outcome["new_rows"],
        "batches": [s["batch_id"] for s in outcome["processed"] if s.get("new_rows")],
        "rows_by_batch": {s["batch_id"]: s["new_rows"] for s in outcome["processed"] if s.get("new_rows")},
    }
    # Pushed (not returned) before a quarantined file fails this task: announce_observations
    # still sees the rows of the group's good files (a failed task emits no asset event).
    context["ti"].xcom_push(key="loaded", value=loaded)
    if outcome["failed"]:
        # Bad data: retrying would not help. Each message names file, rule, column, examples.
        raise AirflowFailException(
            f"{len(outcome['failed'])} of {len(object_keys)} file(s) quarantined"
            f" ({len(outcome['processed'])} processed):\n\n" + "\n\n".join(outcome["failed"])
        )
    if not outcome["new_rows"]:
        # No new observations: no asset event, downstream DAGs are not woken up for nothing.
        raise AirflowSkipException(f"nothing new to load from {object_keys}")


@task(outlets=[OBSERVATIONS], trigger_rule="all_done")
def announce_observations() -> dict:
    """One `observations` asset event for every loaded batch not announced yet: this run's
    (failed ingest_files tasks included) and any an attempt or run that died after its load left."""
    from mlops.ingest import pipeline as ingest_logic

    context = get_current_context()
    pushed = [p for p in context["ti"].xcom_pull(task_ids=["ingest_files"], key="loaded") if p]
    added = {b: n for p in pushed for b, n in (p.get("rows_by_batch") or {}).items()}
    pending = ingest_logic.unannounced_batches()  # the durable truth: batches.announced_at IS NULL
    holding_nothing = [b for b, n in pending.items() if not n]
    if holding_nothing:  # every row of theirs was stored already: nothing to announce
        ingest_logic.mark_announced(holding_nothing)
    # This run's loads count the rows they added; a leftover batch counts the rows it holds.
    rows = {b: added.get(b, n) for b, n in pending.items() if n}
    if not rows:
        # No new observations: no asset event, downstream DAGs are not woken up for nothing.
        raise AirflowSkipException("no new observations in this run")
    announced = {"new_rows": sum(rows.values()), "batches": list(rows)}
    context["outlet_events"][OBSERVATIONS].extra = announced
    print(f"observations updated: {announced}")
    return announced


@task
def mark_announced(announced: dict) -> None:
    """Record the announced batches. A separate task because Airflow registers the event only
    when announce_observations succeeds: marking there could mark a batch whose event never
    came; marking here can at worst announce a batch twice (scoring is idempotent)."""
    from mlops.ingest import pipeline as ingest_logic

    ingest_logic.mark_announced(announced["batches"])


@task(trigger_rule="all_done")
def profile_batches() -> list[dict]:
    """Store the profile of every loaded batch that has none (this run's, and any an earlier
    attempt left), and re-profile batches whose rows a later batch replaced: drift_check
    merges these instead of re-reading rows (mlops.monitoring.batch_profile). Idempotent per batch."""
    from mlops.monitoring.batch_profile import profile_pending

    stored = profile_pending(cfg.dataset)
    print(f"{len(stored)} batch profile(s) stored: {stored}")
    return stored


@task(trigger_rule="one_failed", on_failure_callback=None)  # AirflowFailException: never retried
def fail_if_a_file_failed() -> None:
    """Runs only when an upstream task failed: the run then ends failed, not green."""
    raise AirflowFailException(
        "an upstream task failed: a quarantined file fails its ingest_files task (its log names the file,"
        " the rules and example values); a replay of a missing object fails list_objects"
    )


@dag(
    schedule=cfg.schedules.ingest,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["mlops", "ingest"],
    default_args=dag_default_args(),
    doc_md=__doc__,
    params={
        "object_key": Param(
            None,
            type=["null", "string"],
            title="Object key to replay",
            description=(
                f"Leave empty to process everything under {cfg.storage.landing_prefix}. Or name one object: "
                f"a landing key, or {cfg.storage.raw_prefix}<batch_id>/<file> to replay a batch."
            ),
        )
    },
)
def ingest():
    """Wiring only: each task above holds its step."""
    wait_for_landing = _landing_sensor()
    routed = route()
    keys = list_objects()
    routed >> [wait_for_landing, keys]
    wait_for_landing >> keys
    ingested = ingest_files.expand(object_keys=keys)
    announced = announce_observations()
    ingested >> [announced, profile_batches(), fail_if_a_file_failed()]
    mark_announced(announced)


ingest()
