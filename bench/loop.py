"""The loop at the speed of its work: new files through ingest and batch_score on the running stack.

    make up   # or make demo (a champion is needed to measure predictions)
    .venv/bin/python bench/loop.py --files 1 --rounds 5   # freshness: 5 drops of one file
    .venv/bin/python bench/loop.py --files 24             # 24 files at once, then a backfill run

It drives the embedded stack of this worktree (`make up`) like an upstream system: it
refuses to run when a service of the stack is down or unhealthy, when ingest or batch_score
is paused, or when landing files are already waiting (their runs would mix with ours).

Each round drops `--files` new files at once, each one period (a month for data more
frequent than daily, a quarter otherwise, as `make demo` cuts them) of the configured data
set's example file, shifted into a time range of its own: the periods right AFTER the newest
observation in the warehouse (after the demo's data: Turku ends 2016-12, so 2017-01 on).
After, not before, because a new file in real life holds the newest data, and ingest's
conflict probe, the profile and the scoring see it as they see new data; the range is
checked to hold no observation, and its end must lie before now (validation drops rows
later than now + future_tolerance_hours, and earlier than earliest_timestamp).

For each file it prints the wall time from put_object to its `batches` row saying `loaded`
and to its champion predictions being queryable (polled every --poll seconds), and for each
of the two phases the share of the wall time that Airflow task instances ran (start/end from
the REST API v2), that the landing sensor waited (its poke interval), that tasks sat queued
(queued_when -> start), and the rest: the scheduler's gaps. Medians over all files. With
more than one file, a manual batch_score backfill run over the range (champion and
challenger, if there is one) is timed too. The load average is printed before and after.

Afterwards it leaves the stack as it found it: its rows (predictions, batch_profiles,
observation_conflicts, observations, batches), its objects (landing, raw, reports,
quarantine, predictions of its batches) and the finished ingest and batch_score runs that
handled them (not with --keep-runs). The asset events of those runs stay (Airflow's API
cannot delete them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "scripts")]

import stack  # noqa: E402
from airflow_api import AirflowClient  # noqa: E402

KEY_TAG = "bench-loop"
PIPELINE_DAGS = ("ingest", "batch_score")
SENSOR_TASK = "wait_for_landing"


def say(message: str) -> None:
    print(f"[loop {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------- the stack


def require_stack(settings) -> None:
    """Exit with a message unless every service of the stack runs and answers."""
    bad = []
    for name in stack.services(settings):
        alive = stack.service_pid(settings, name) is not None
        healthy, detail = stack.probe(settings, name) if alive else (False, "not running")
        if not healthy:
            bad.append(f"{name}: {detail}")
    if bad:
        raise SystemExit(
            f"bench/loop.py measures the running stack of {settings.state_dir} and found it not up:\n  "
            + "\n  ".join(bad)
            + "\nStart it with `make up` (or `make demo`, which also makes a champion), then run this again."
        )


def connect(settings):
    """The stack's configuration and the pipeline's own clients on it (the AIRFLOW_CONN_* of
    the stack): (config, S3 client, warehouse engine, REST client)."""
    os.environ["MLOPS_CONFIG"] = str(stack.stack_config(settings))
    os.environ.update(settings.connection_env())
    os.environ.update(settings.mlflow_client_env())
    from mlops.config import get_config
    from mlops.io import warehouse
    from mlops.io.connections import s3_client

    client = AirflowClient(settings.airflow_url, settings.airflow_user, settings.airflow_password)
    return get_config(), s3_client(), warehouse.engine(), client


def require_idle(cfg, s3, client) -> None:
    """Exit unless ingest and batch_score are unpaused and no landing file waits."""
    paused = [d for d in PIPELINE_DAGS if client.dag(d)["is_paused"]]
    if paused:
        raise SystemExit(f"{', '.join(paused)} paused: unpause (the UI, or `make demo`) before measuring")
    waiting = s3.list_objects_v2(Bucket=cfg.storage.bucket, Prefix=cfg.storage.landing_prefix).get("KeyCount", 0)
    if waiting:
        raise SystemExit(
            f"{waiting} object(s) already wait under {cfg.storage.landing_prefix}: measure on a quiet stack"
        )


# ---------------------------------------------------------------- the files


def query(engine, sql: str, **params) -> list[tuple]:
    """Rows of a query; list parameters expand into IN lists."""
    import sqlalchemy as sa

    statement = sa.text(sql)
    for name, value in params.items():
        if isinstance(value, list | tuple):
            statement = statement.bindparams(sa.bindparam(name, expanding=True))
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(statement, params)]


def template_periods(cfg) -> tuple[str, list]:
    """(period frequency "M" or "Q", [frame of one period]) of the example file, as make demo cuts it."""
    import pandas as pd
    from demo import cut_into_periods, period_rule

    dataset = cfg.dataset
    if dataset.example_file is None:
        raise SystemExit("the configuration names no dataset.example_file to cut bench files from")
    raw = pd.read_csv(ROOT / dataset.example_file, dtype=str, keep_default_na=False)
    periods = [frame for name, frame in cut_into_periods(raw, dataset)[1:] if len(frame)]
    return period_rule(dataset.frequency)[0], periods


def bench_periods(cfg, engine, freq: str, count: int, templates: list) -> list:
    """`count` consecutive pandas Periods after the newest observation and the example data,
    all before now; exits when they do not fit or hold observations already."""
    import pandas as pd

    time_column = cfg.dataset.time_column
    newest = query(engine, f'SELECT max("{time_column}") FROM observations')[0][0]
    example_end = max(pd.to_datetime(t[time_column], format=cfg.dataset.time_format).max() for t in templates)
    after = max(pd.Timestamp(newest) if newest else example_end, example_end)
    periods = [pd.Period(after, freq) + 1 + i for i in range(count)]
    if periods[-1].end_time >= pd.Timestamp.now():
        raise SystemExit(f"{count} periods after {after} reach past now: too many files for a range of their own")
    lo, hi = _text(periods[0].start_time), _text(periods[-1].end_time)
    taken = query(engine, f'SELECT count(*) FROM observations WHERE "{time_column}" BETWEEN :lo AND :hi', lo=lo, hi=hi)
    if taken[0][0]:
        raise SystemExit(f"the warehouse already holds observations in {lo} .. {hi}: not a range of our own")
    return periods


def _text(stamp) -> str:
    return stamp.strftime("%Y-%m-%d %H:%M:%S")


def period_file(cfg, template, period) -> bytes:
    """A template period's rows shifted to start at `period`, those past its end cut, as CSV."""
    import pandas as pd

    dataset = cfg.dataset
    times = pd.to_datetime(template[dataset.time_column], format=dataset.time_format)
    start = pd.Period(times.min(), period.freqstr).start_time
    shifted = times + (period.start_time - start)
    frame = template.assign(**{dataset.time_column: shifted.dt.strftime(dataset.time_format)})
    return frame[(shifted < period.end_time).to_numpy()].to_csv(index=False).encode()


# ---------------------------------------------------------------- measuring


def drop_and_wait(cfg, s3, engine, files: dict[str, bytes], poll: float, timeout: float, records: dict) -> None:
    """Put every file, then poll the warehouse; fills `records` as it goes (so an interrupted
    run still cleans up what it dropped): {key: {put, loaded, predicted, batch_id, status}} (epoch s)."""
    for key, body in files.items():
        records[key] = {"put": time.time(), "loaded": None, "predicted": None, "batch_id": None, "status": None}
        s3.put_object(Bucket=cfg.storage.bucket, Key=key, Body=body)
    mine = {key: records[key] for key in files}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(r["predicted"] or _failed(r) for r in mine.values()):
        _observe(engine, mine)
        time.sleep(poll)
    if not all(r["predicted"] or _failed(r) for r in mine.values()):
        say(f"round timed out after {timeout:.0f} s: is ingest running? (its import errors, the scheduler's log)")


def _failed(record: dict) -> bool:
    return record["status"] not in (None, "loaded")


def _observe(engine, records: dict[str, dict]) -> None:
    """Fill in when each file's batch was first seen loaded, and its champion predictions."""
    now = time.time()
    rows = query(
        engine, "SELECT object_key, batch_id, status FROM batches WHERE object_key IN :keys", keys=list(records)
    )
    for key, batch_id, status in rows:
        record = records[key]
        record.update(batch_id=batch_id, status=status)
        if status == "loaded" and record["loaded"] is None:
            record["loaded"] = now
    ids = [r["batch_id"] for r in records.values() if r["loaded"] and not r["predicted"]]
    if ids:
        sql = "SELECT DISTINCT batch_id FROM predictions WHERE role = 'champion' AND batch_id IN :ids"
        scored = {b for (b,) in query(engine, sql, ids=ids)}
        for record in records.values():
            if record["batch_id"] in scored and not record["predicted"]:
                record["predicted"] = now


def runs_since(client, dag_id: str, since: float) -> list[dict]:
    """Runs of a DAG that ended after `since` or still run, with their task instances."""
    runs = []
    for run in client.dag_runs(dag_id, limit=50):
        end = _epoch(run.get("end_date"))
        if end is None or end >= since:
            run["tis"] = client.task_instances(dag_id, run["dag_run_id"])
            runs.append(run)
    return runs


def _epoch(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


def _covered(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    """Seconds of [lo, hi] covered by the union of the intervals."""
    clipped = sorted((max(a, lo), min(b, hi)) for a, b in intervals if min(b, hi) > max(a, lo))
    total, reach = 0.0, lo
    for a, b in clipped:
        if b > reach:
            total += b - max(a, reach)
            reach = b
    return total


def phase_shares(tis: list[dict], lo: float, hi: float) -> dict[str, float]:
    """Shares of [lo, hi]: task (a task instance ran), sensor (the landing sensor waited),
    queued (a task instance waited for a slot), scheduling (none of these: the scheduler's gaps)."""
    now = time.time()
    spans = {"task": [], "sensor": [], "queued": []}
    for ti in tis:
        start, end = _epoch(ti.get("start_date")), _epoch(ti.get("end_date")) or now
        queued = _epoch(ti.get("queued_when"))
        if start is not None:
            spans["sensor" if ti["task_id"] == SENSOR_TASK else "task"].append((start, end))
        if queued is not None and start is not None:
            spans["queued"].append((queued, start))
    wall = max(hi - lo, 1e-9)
    task = _covered(spans["task"], lo, hi)
    sensor = _covered(spans["sensor"] + spans["task"], lo, hi) - task
    queued = _covered(spans["queued"] + spans["sensor"] + spans["task"], lo, hi) - task - sensor
    shares = {"task": task / wall, "sensor": sensor / wall, "queued": queued / wall}
    shares["scheduling"] = max(0.0, 1 - sum(shares.values()))
    return shares


def report_files(records: dict[str, dict], tis: list[dict]) -> list[tuple[float, float]]:
    """Print one line per file; return [(to loaded, to predicted)] of the files that got both."""
    times = []
    print(f"{'file':44s} {'loaded':>7s} {'predicted':>9s}   put->loaded shares   |   loaded->predicted shares")
    for key, r in records.items():
        name = key.rsplit("/", 1)[-1]
        if not r["loaded"] or not r["predicted"]:
            print(f"{name:44s} status={r['status']} loaded={bool(r['loaded'])} predicted={bool(r['predicted'])}")
            continue
        first, second = phase_shares(tis, r["put"], r["loaded"]), phase_shares(tis, r["loaded"], r["predicted"])
        times.append((r["loaded"] - r["put"], r["predicted"] - r["put"]))
        print(f"{name:44s} {times[-1][0]:6.1f}s {times[-1][1]:8.1f}s   {_shares(first)}   |   {_shares(second)}")
    return times


def _shares(shares: dict[str, float]) -> str:
    return " ".join(f"{name} {value:4.0%}" for name, value in shares.items())


def print_medians(times: list[tuple[float, float]], all_tis: list[dict], records: list[dict]) -> None:
    if not times:
        print("no file was loaded and scored: nothing to summarise")
        return
    loaded, predicted = zip(*times, strict=True)
    print(f"median over {len(times)} file(s): put->loaded {statistics.median(loaded):.1f} s, "
          f"put->predictions {statistics.median(predicted):.1f} s "
          f"(min {min(predicted):.1f}, max {max(predicted):.1f})")  # fmt: skip
    for phase, (lo_key, hi_key) in {
        "put->loaded": ("put", "loaded"),
        "loaded->predicted": ("loaded", "predicted"),
    }.items():
        shares = [phase_shares(all_tis, r[lo_key], r[hi_key]) for r in records if r["loaded"] and r["predicted"]]
        median = {name: statistics.median(s[name] for s in shares) for name in shares[0]}
        print(f"  {phase:18s} median shares: {_shares(median)}")


def task_durations(tis: list[dict]) -> str:
    """task_id (count) median seconds of the finished task instances, for the log."""
    by_task: dict[str, list[float]] = {}
    for ti in tis:
        start, end = _epoch(ti.get("start_date")), _epoch(ti.get("end_date"))
        if start and end:
            by_task.setdefault(ti["task_id"], []).append(end - start)
    return ", ".join(f"{t} x{len(d)} {statistics.median(d):.1f}s" for t, d in by_task.items())


# ---------------------------------------------------------------- backfill


def backfill(client, periods: list, timeout: float) -> str | None:
    """A manual batch_score run over the bench's range (every batch, champion and challenger):
    prints its wall time (the run's start to end, from Airflow) and its tasks. Returns the run id."""
    conf = {"start": _text(periods[0].start_time), "end": _text(periods[-1].end_time.ceil("s"))}
    t0 = time.time()
    run_id = client.trigger("batch_score", conf)
    run = client.wait_for_run("batch_score", run_id, timeout=timeout)
    wall = time.time() - t0
    tis = client.task_instances("batch_score", run_id)
    scored = [ti for ti in tis if ti["task_id"] == "score"]
    run_wall = _epoch(run["end_date"]) - _epoch(run["start_date"])
    score_wall = (
        max(_epoch(t["end_date"]) for t in scored) - min(_epoch(t["start_date"]) for t in scored) if scored else 0
    )
    print(f"backfill batch_score {conf}: {run['state']}; run start->end {run_wall:.1f} s "
          f"(trigger->seen done {wall:.1f} s); {len(scored)} score task(s) spanning {score_wall:.1f} s; "
          f"tasks: {task_durations(tis)}")  # fmt: skip
    return run_id


# ---------------------------------------------------------------- leaving the stack as found


BATCH_TABLES = ("predictions", "batch_profiles", "observation_conflicts", "observations", "batches")


def remove_rows(engine, batch_ids: list[str], keys: list[str]) -> tuple[list[str], dict[str, int]]:
    """Delete the rows of the bench's batches (those named, and any whose object key is one of
    ours) from every table keyed by batch_id, children first: (batch ids, {table: rows})."""
    import sqlalchemy as sa

    found = query(engine, "SELECT batch_id FROM batches WHERE object_key IN :k", k=keys) if keys else []
    ids = sorted(set(batch_ids) | {b for (b,) in found})
    removed = {}
    if not ids:
        return ids, removed
    with engine.begin() as conn:
        for table in BATCH_TABLES:
            statement = sa.text(f"DELETE FROM {table} WHERE batch_id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            )
            removed[table] = conn.execute(statement, {"ids": ids}).rowcount
    return ids, removed


def remove_objects(cfg, s3, batch_ids: list[str], keys: list[str]) -> int:
    """Delete the bench's landing keys and every object of its batches (raw copy, report,
    quarantine, predictions of any model version and role). Returns how many."""
    storage = cfg.storage
    doomed = list(keys)
    for batch_id in batch_ids:
        for prefix in (storage.raw_prefix, storage.reports_prefix, storage.quarantine_prefix):
            doomed += _keys(s3, storage.bucket, f"{prefix}{batch_id}/")
    marks = tuple(f"/batch_id={batch_id}/" for batch_id in batch_ids)
    doomed += [k for k in _keys(s3, storage.bucket, storage.predictions_prefix) if any(m in k for m in marks)]
    for start in range(0, len(doomed), 1000):
        chunk = [{"Key": k} for k in doomed[start : start + 1000]]
        s3.delete_objects(Bucket=storage.bucket, Delete={"Objects": chunk, "Quiet": True})
    return len(doomed)


def _keys(s3, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def remove_runs(client, runs: dict[str, list[str]]) -> int:
    """Delete finished DAG runs through the REST API: {dag_id: [run_id]}. Returns how many."""
    from urllib.parse import quote

    count = 0
    for dag_id, run_ids in runs.items():
        for run_id in run_ids:
            client.request("DELETE", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")
            count += 1
    return count


def our_runs(client, since: float) -> dict[str, list[str]]:
    """The finished runs that handled the bench's files: ingest runs that ran ingest_files and
    every batch_score run, ended after `since` (the bench's start)."""
    found = {}
    for dag_id in PIPELINE_DAGS:
        runs = [r for r in runs_since(client, dag_id, since) if r["state"] in ("success", "failed")]
        if dag_id == "ingest":
            runs = [r for r in runs if any(t["task_id"] == "ingest_files" and t.get("start_date") for t in r["tis"])]
        found[dag_id] = [r["dag_run_id"] for r in runs]
    return found


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=1, help="files dropped at once per round (1, 24)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds, one after another (5 for a median of 5)")
    parser.add_argument(
        "--pause",
        type=float,
        default=0,
        help="seconds to wait before each round: past ingest.sensor_poke_before_defer_seconds (e.g. 45), the"
        " files find the sensor deferred in the triggerer instead of poking in its worker",
    )
    parser.add_argument("--poll", type=float, default=0.25, help="seconds between warehouse polls")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for one round")
    parser.add_argument("--no-backfill", action="store_true", help="skip the manual backfill run")
    parser.add_argument("--keep-runs", action="store_true", help="keep the bench's DAG runs (to inspect them)")
    return parser.parse_args(argv)


def run_rounds(args, cfg, s3, engine, client, started: float, records: dict) -> list:
    """Drop and measure each round, filling `records` (by key): the bench's periods."""
    freq, templates = template_periods(cfg)
    periods = bench_periods(cfg, engine, freq, args.files * args.rounds, templates)
    say(f"time range of the bench: {periods[0]} .. {periods[-1]} (after the newest observation)")
    tag = uuid.uuid4().hex[:6]
    for number in range(args.rounds):
        chosen = periods[number * args.files : (number + 1) * args.files]
        files = {
            f"{cfg.storage.landing_prefix}{KEY_TAG}-{tag}-{p}.csv": period_file(cfg, templates[i % len(templates)], p)
            for i, p in enumerate(chosen)
        }
        time.sleep(args.pause)
        rows = sum(body.count(b"\n") - 1 for body in files.values())
        say(f"round {number + 1}/{args.rounds}: {len(files)} file(s), {rows} rows")
        drop_and_wait(cfg, s3, engine, files, args.poll, args.timeout, records)
    tis = [ti for dag_id in PIPELINE_DAGS for run in runs_since(client, dag_id, started) for ti in run["tis"]]
    times = report_files(records, tis)
    print_medians(times, tis, list(records.values()))
    print("task durations:", task_durations(tis))
    return periods


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    state_dir = Path(os.environ.get("MLOPS_STATE_DIR") or ROOT / ".stack")
    if not (state_dir / "credentials.json").exists():  # Settings.from_env would make a new stack's state
        raise SystemExit(f"no stack in {state_dir}: start one with `make up` (or `make demo`), then run this again")
    settings = stack.Settings.from_env()
    require_stack(settings)
    cfg, s3, engine, client = connect(settings)
    require_idle(cfg, s3, client)
    load_before = os.getloadavg()
    say(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} ({os.cpu_count()} cores)")
    started = time.time()
    records: dict[str, dict] = {}
    try:
        periods = run_rounds(args, cfg, s3, engine, client, started, records)
        if args.files > 1 and not args.no_backfill:
            backfill(client, periods, args.timeout)
    finally:
        load_after = os.getloadavg()
        say(f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
        leave_as_found(args, cfg, s3, engine, client, records, started)
    return 0


def leave_as_found(args, cfg, s3, engine, client, records: dict, started: float) -> None:
    """Remove the bench's rows, objects and (unless --keep-runs) DAG runs."""
    keys = [k for k in records if KEY_TAG in k]
    batch_ids = [r["batch_id"] for r in records.values() if r["batch_id"]]
    # The last batch_score run may still be finishing (challenger scores): let it end first.
    for run in runs_since(client, "batch_score", started):
        if run["state"] not in ("success", "failed"):
            client.wait_for_run("batch_score", run["dag_run_id"], timeout=args.timeout)
    batch_ids, rows = remove_rows(engine, batch_ids, keys)
    objects = remove_objects(cfg, s3, batch_ids, keys)
    runs = {} if args.keep_runs else our_runs(client, started)
    deleted = remove_runs(client, runs)
    say(f"cleaned up: rows {rows}, {objects} object(s), {deleted} DAG run(s) {'kept' if args.keep_runs else 'deleted'}")


if __name__ == "__main__":
    sys.exit(main())
