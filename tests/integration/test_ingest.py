"""The ingest DAG on the real object store (SeaweedFS) and the real SQLite warehouse.

Files are put under landing/ with boto3, the DAG runs with dag.test() (sensor included), and
the assertions read the warehouse, the batches table and the quarantine area.
"""

from __future__ import annotations

import contextlib
import gzip
import json
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from helpers import config_env, query, s3_client, set_config, task_states

import stack as stack_module
from mlops.config import get_config
from mlops.ingest import pipeline as ingest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TURKU = ROOT / "include" / "data" / "port_of_turku_weather.csv.gz"
BAD = ROOT / "tests" / "data" / "bad"
MANIFEST = json.loads((BAD / "manifest.json").read_text())
STORAGE = get_config().storage


@pytest.fixture()
def s3(stack):
    return s3_client(stack)


@pytest.fixture()
def fresh(s3, stack, tmp_path, monkeypatch):
    """Empty ingest areas in the bucket and a warehouse of this test's own, on the parametrized
    backend (a SQLite file, or a fresh PostgreSQL database): other tests load observations too."""
    for prefix in (STORAGE.landing_prefix, STORAGE.raw_prefix, STORAGE.quarantine_prefix, STORAGE.reports_prefix):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=STORAGE.bucket, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=STORAGE.bucket, Delete={"Objects": keys})
    if stack.warehouse == "postgres":
        stack_module.create_pg_database(stack, "ingest_tests", fresh=True)
        connection = {**stack.warehouse_connection(), "schema": "ingest_tests"}
    else:
        connection = {"conn_type": "sqlite", "host": str(tmp_path / "warehouse.db")}
    monkeypatch.setenv(f"AIRFLOW_CONN_{get_config().connections.warehouse.upper()}", json.dumps(connection))
    return s3


def _put(s3, key: str, body: bytes) -> None:
    s3.put_object(Bucket=STORAGE.bucket, Key=key, Body=body)


def _keys(s3, prefix: str) -> list[str]:
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=STORAGE.bucket, Prefix=prefix):
        out += [o["Key"] for o in page.get("Contents", [])]
    return out


def _observation_events(dag_run) -> list[dict]:
    """The extras of the `observations` asset events this ingest run emitted (Airflow's metadata DB)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        events = session.scalars(
            sa.select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == "observations", AssetEvent.source_run_id == dag_run.run_id)
        ).all()
        return [dict(event.extra or {}) for event in events]


def test_good_file_loads_once_and_a_rerun_is_recognised(run_dag, fresh):
    raw = pd.read_csv(TURKU)
    month = raw[raw["Timestamp"].str.startswith("2016-03")]
    body = month.to_csv(index=False).encode()
    key = f"{STORAGE.landing_prefix}2016-03.csv"
    _put(fresh, key, body)

    dag_run = run_dag("ingest")
    assert dag_run.state == "success", task_states(dag_run, by_map_index=True)
    batch_id = ingest.batch_id_of_content(key, body)
    (batch,) = ingest.batches_for_key(key)
    assert batch["batch_id"] == batch_id and batch["status"] == "loaded"
    assert batch["rows_kept"] == month["Timestamp"].nunique()
    assert _keys(fresh, STORAGE.landing_prefix) == []
    assert _keys(fresh, f"{STORAGE.raw_prefix}{batch_id}/") == [f"{STORAGE.raw_prefix}{batch_id}/2016-03.csv"]
    stored = fresh.get_object(Bucket=STORAGE.bucket, Key=f"{STORAGE.raw_prefix}{batch_id}/2016-03.csv")["Body"].read()
    assert stored == body
    rows = query('SELECT "Timestamp", batch_id FROM observations')
    assert sorted(r[0] for r in rows) == sorted(month["Timestamp"].unique())
    assert {r[1] for r in rows} == {batch_id}
    assert _observation_events(dag_run) == [{"new_rows": len(rows), "batches": [batch_id]}]
    # Its profile for drift_check (profile_batches), over the month it holds.
    profiled = query(f"SELECT n_rows, first_day, last_day FROM batch_profiles WHERE batch_id = '{batch_id}'")
    assert [tuple(r) for r in profiled] == [(len(rows), "2016-03-01", "2016-03-31")]

    # The same file again: recognised, nothing loaded twice, landing emptied, no new asset event.
    _put(fresh, key, body)
    dag_run = run_dag("ingest")
    assert dag_run.state == "success", task_states(dag_run, by_map_index=True)
    assert task_states(dag_run, by_map_index=True)["ingest_files[0]"] == "skipped"
    assert task_states(dag_run, by_map_index=True)["announce_observations"] == "skipped"
    assert _observation_events(dag_run) == []
    assert len(ingest.batches_for_key(key)) == 1
    assert query("SELECT COUNT(*) FROM observations")[0][0] == month["Timestamp"].nunique()
    assert _keys(fresh, STORAGE.landing_prefix) == []


def test_a_replay_that_inserts_nothing_announces_nothing(run_dag, fresh):
    """Replaying a loaded batch's raw file re-validates it, but every row is stored already:
    no new rows, so no observations event (batch_score must not wake for nothing)."""
    raw = pd.read_csv(TURKU)
    body = raw[raw["Timestamp"].str.startswith("2016-04")].to_csv(index=False).encode()
    key = f"{STORAGE.landing_prefix}2016-04.csv"
    _put(fresh, key, body)
    assert run_dag("ingest").state == "success"
    batch_id = ingest.batch_id_of_content(key, body)
    stored = query("SELECT COUNT(*) FROM observations")[0][0]

    dag_run = run_dag("ingest", conf={"object_key": f"{STORAGE.raw_prefix}{batch_id}/2016-04.csv"})
    assert dag_run.state == "success", task_states(dag_run, by_map_index=True)
    assert _observation_events(dag_run) == []
    assert task_states(dag_run, by_map_index=True)["announce_observations"] == "skipped", task_states(
        dag_run, by_map_index=True
    )
    assert query("SELECT COUNT(*) FROM observations")[0][0] == stored


def test_a_batch_loaded_by_an_attempt_that_died_is_announced_by_the_next_run(run_dag, fresh):
    """An attempt loads a batch and dies before any asset event (process_object run outside
    the DAG, nothing announced): the next run announces that batch's rows with its own, and
    batch_score's plan holds it."""
    from mlops.scoring import batch as scoring

    raw = pd.read_csv(TURKU)
    bodies = {m: raw[raw["Timestamp"].str.startswith(m)].to_csv(index=False).encode() for m in ("2016-06", "2016-07")}
    keys = {m: f"{STORAGE.landing_prefix}{m}.csv" for m in bodies}
    _put(fresh, keys["2016-06"], bodies["2016-06"])
    orphan = ingest.process_object(keys["2016-06"])  # the dead attempt: loaded, landing removed
    assert orphan["status"] == "loaded" and orphan["new_rows"] > 0
    assert query("SELECT announced_at FROM batches WHERE batch_id = :b", b=orphan["batch_id"]) == [(None,)]

    _put(fresh, keys["2016-07"], bodies["2016-07"])
    dag_run = run_dag("ingest")
    assert dag_run.state == "success", task_states(dag_run, by_map_index=True)
    later = ingest.batch_id_of_content(keys["2016-07"], bodies["2016-07"])
    stored = dict(query("SELECT batch_id, COUNT(*) FROM observations GROUP BY batch_id"))
    assert _observation_events(dag_run) == [
        {"new_rows": stored[orphan["batch_id"]] + stored[later], "batches": [orphan["batch_id"], later]}
    ]
    assert stored[orphan["batch_id"]] == orphan["new_rows"]
    assert query("SELECT COUNT(*) FROM batches WHERE announced_at IS NULL") == [(0,)]
    plan = scoring.plan_batches({"model_name": "m", "champion": "1"})
    assert {p["batch_id"] for p in plan} == {orphan["batch_id"], later}


def test_a_timestamp_stored_with_other_values_is_a_listed_conflict_kept_or_replaced(fresh, monkeypatch):
    """Batch B repeats 5 stored hours of batch A: 3 with other values (one value now missing),
    2 identical (a missing value on both sides is equal). keep_first: 3 conflicts listed in B's
    report and recorded, A's rows stay. replace: batch C's values win, each row records A."""
    raw = pd.read_csv(TURKU, dtype=str, keep_default_na=False)
    month = raw[raw["Timestamp"].str.startswith("2016-09")].drop_duplicates("Timestamp").reset_index(drop=True)
    first, later = month.iloc[0:20].copy(), month.iloc[15:25].copy()
    first.loc[18, "Pressure_millibars"] = later.loc[18, "Pressure_millibars"] = ""
    later.loc[[15, 16], "Temperature_C"] = "29.5"
    later.loc[17, "Pressure_millibars"] = ""
    times = list(month["Timestamp"][15:18])

    def load(name: str, frame) -> dict:
        key, body = f"{STORAGE.landing_prefix}{name}.csv", frame.to_csv(index=False).encode()
        _put(fresh, key, body)
        return ingest.process_object(key)

    a, b = load("a", first), load("b", later)
    assert (b["new_rows"], b["conflicts"]) == (5, 3)
    report = json.loads(
        fresh.get_object(Bucket=STORAGE.bucket, Key=f"{STORAGE.reports_prefix}{b['batch_id']}/validation.json")[
            "Body"
        ].read()
    )
    assert report["conflicts"]["count"] == 3 and report["conflicts"]["on_conflict"] == "keep_first"
    assert [e["time"] for e in report["conflicts"]["examples"]] == times
    assert report["conflicts"]["examples"][0]["new"]["Temperature_C"] == 29.5
    kept = query(
        'SELECT batch_id FROM observations WHERE "Timestamp" IN (:t0, :t1, :t2)', t0=times[0], t1=times[1], t2=times[2]
    )
    assert kept == [(a["batch_id"],)] * 3
    recorded = 'SELECT "Timestamp", stored_batch_id, action FROM observation_conflicts WHERE batch_id = :b ORDER BY 1'
    assert query(recorded, b=b["batch_id"]) == [(t, a["batch_id"], "kept_first") for t in times]

    with config_env(MLOPS__INGEST__ON_CONFLICT="replace"):
        third = later.copy()
        third.loc[15, "Temperature_C"] = "-40.0"
        c = load("c", third)
    # Its 3 rows differ from A's (the stored ones); its 5 later hours equal B's: no conflict there.
    assert (c["new_rows"], c["conflicts"]) == (3, 3)
    now = query(
        'SELECT "Temperature_C", "Pressure_millibars", batch_id FROM observations WHERE "Timestamp" IN (:t0, :t1, :t2) ORDER BY 1',
        t0=times[0],
        t1=times[1],
        t2=times[2],
    )
    assert sorted(now, key=str) == sorted(
        [
            (-40.0, float(third.loc[15, "Pressure_millibars"]), c["batch_id"]),
            (29.5, float(third.loc[16, "Pressure_millibars"]), c["batch_id"]),
            (float(third.loc[17, "Temperature_C"]), None, c["batch_id"]),
        ],
        key=str,
    )
    assert query(recorded, b=c["batch_id"]) == [(t, a["batch_id"], "replaced") for t in times]
    (old,) = query(
        'SELECT stored_values FROM observation_conflicts WHERE batch_id = :b AND stored_batch_id = :a AND "Timestamp" = :t',
        b=c["batch_id"],
        a=a["batch_id"],
        t=times[2],
    )
    assert json.loads(old[0])["Pressure_millibars"] == float(first.loc[17, "Pressure_millibars"])


def _month_files() -> dict[str, bytes]:
    """The Turku file split by calendar month (92 files), rows kept in file order."""
    text = gzip.decompress(TURKU.read_bytes()).decode()
    header, *lines = text.splitlines()
    months: dict[str, list[str]] = {}
    for line in lines:
        months.setdefault(line[:7], []).append(line)
    return {
        f"{STORAGE.landing_prefix}turku/{m}.csv": ("\n".join([header, *rows]) + "\n").encode()
        for m, rows in months.items()
    }


def test_turku_month_by_month_loads_every_valid_hour_once(run_dag, fresh):
    files = _month_files()
    assert len(files) > 80
    for key, body in files.items():
        _put(fresh, key, body)
    # Expected, computed independently of the pipeline: the unique parseable timestamps.
    raw = pd.read_csv(TURKU, dtype=str)
    parsed = pd.to_datetime(raw["Timestamp"], format="%Y-%m-%d %H:%M:%S", errors="coerce")
    expected = set(raw.loc[parsed.notna(), "Timestamp"])

    dag_run = run_dag("ingest")
    states = task_states(dag_run, by_map_index=True)
    assert dag_run.state == "success", {k: v for k, v in states.items() if v != "success"}
    stored = query('SELECT "Timestamp", COUNT(*) FROM observations GROUP BY "Timestamp"')
    assert {t for t, _ in stored} == expected
    assert max(n for _, n in stored) == 1
    statuses = query("SELECT status, COUNT(*), SUM(rows_kept) FROM batches GROUP BY status")
    assert statuses == [("loaded", len(files), len(expected))]
    # Pressure 0 is a broken sensor: the rows are kept with the value nulled.
    zero_hours = set(raw.loc[raw["Pressure_millibars"].astype(float) == 0, "Timestamp"])
    nulls = query('SELECT "Timestamp" FROM observations WHERE "Pressure_millibars" IS NULL')
    assert {t for (t,) in nulls} == zero_hours
    assert _keys(fresh, STORAGE.landing_prefix) == []


def _large_csv(path: Path, rows: int) -> int:
    """A file shaped like the example, `rows` distinct hours, written in pieces (never whole)."""
    base = pd.read_csv(TURKU).drop_duplicates("Timestamp")
    start = pd.Timestamp("1940-01-01")  # 300k hours end before the example data
    written = 0
    with open(path, "w") as out:
        while written < rows:
            n = min(len(base), rows - written)
            piece = base.head(n).copy()
            piece["Timestamp"] = pd.date_range(start + pd.Timedelta(hours=written), periods=n, freq="h").strftime(
                "%Y-%m-%d %H:%M:%S"
            )
            piece.to_csv(out, index=False, header=written == 0)
            written += n
    return path.stat().st_size


def test_bad_corpus_weird_keys_and_a_large_file_in_one_run(run_dag, fresh, tmp_path):
    """Every bad file is quarantined (or loaded without its bad rows) with a reason; nothing
    partial reaches the warehouse; the good files in the same run still load."""
    keys = {}
    for name in MANIFEST:
        keys[name] = f"{STORAGE.landing_prefix}bad/{name}"
        _put(fresh, keys[name], (BAD / name).read_bytes())
    good = pd.read_csv(TURKU)
    good = good[good["Timestamp"].str.startswith("2016-05")].to_csv(index=False).encode()
    # Keys with spaces, unicode and '..': handled as plain keys, never as paths.
    odd_keys = [
        f"{STORAGE.landing_prefix}odd/with space ä ☂.csv",
        f"{STORAGE.landing_prefix}odd/..hidden..csv",
        f"{STORAGE.landing_prefix}odd/a..b..csv",
    ]
    for i, key in enumerate(odd_keys):
        month = pd.read_csv(TURKU)
        month = month[month["Timestamp"].str.startswith(f"2016-0{6 + i}")]
        _put(fresh, key, month.to_csv(index=False).encode())
    _put(fresh, f"{STORAGE.landing_prefix}good.csv", good)
    big = tmp_path / "large.csv"
    big_size = _large_csv(big, 300_000)
    big_key = f"{STORAGE.landing_prefix}large/large.csv"
    fresh.upload_file(str(big), STORAGE.bucket, big_key)

    dag_run = run_dag("ingest")
    assert dag_run.state == "failed"  # quarantined batches fail their task (and raise an alert)
    states = task_states(dag_run, by_map_index=True)
    assert states["fail_if_a_file_failed"] == "failed" and states["announce_observations"] == "success", states

    for name, expected in MANIFEST.items():
        if not (BAD / name).stat().st_size:  # a zero-length object is not a file to ingest: it stays
            assert ingest.batches_for_key(keys[name]) == [] and keys[name] in _keys(fresh, STORAGE.landing_prefix)
            continue
        (batch,) = ingest.batches_for_key(keys[name])
        assert batch["status"] == expected["status"], (name, batch)
        if expected["status"] == "quarantined":
            folder = f"{STORAGE.quarantine_prefix}{batch['batch_id']}/"
            assert sorted(_keys(fresh, folder)) == sorted(
                [folder + ingest.safe_name(keys[name]), folder + "report.html", folder + "validation.json"]
            ), name
            result = json.loads(fresh.get_object(Bucket=STORAGE.bucket, Key=folder + "validation.json")["Body"].read())
            for word in expected["reason_contains"]:
                assert word in batch["reason"] + json.dumps(result), (name, word, batch["reason"])
            assert batch["report_uri"] == f"s3://{STORAGE.bucket}/{folder}report.html"
            assert query("SELECT COUNT(*) FROM observations WHERE batch_id = :b", b=batch["batch_id"]) == [(0,)]
        else:
            assert batch["rows_dropped"] == expected["rows_dropped"], (name, batch)
            assert query("SELECT COUNT(*) FROM observations WHERE batch_id = :b", b=batch["batch_id"])[0][0] > 0, name

    for key in [*odd_keys, f"{STORAGE.landing_prefix}good.csv"]:
        (batch,) = ingest.batches_for_key(key)
        assert batch["status"] == "loaded", batch
        (raw_key,) = _keys(fresh, f"{STORAGE.raw_prefix}{batch['batch_id']}/")
        assert ".." not in raw_key[len(STORAGE.raw_prefix) :] and " " not in raw_key

    (batch,) = ingest.batches_for_key(big_key)
    assert batch["status"] == "loaded" and batch["rows_kept"] == 300_000, batch
    assert _keys(fresh, STORAGE.landing_prefix) == [keys["empty.csv"]]  # the zero-length placeholder stays
    # No partial rows: only loaded batches own observations.
    owners = query("SELECT DISTINCT b.status FROM observations o JOIN batches b ON o.batch_id = b.batch_id")
    assert owners == [("loaded",)]
    # The good files' rows are announced even though every task held a bad file and failed.
    assert all(state == "failed" for task, state in states.items() if task.startswith("ingest_files")), states
    (event,) = _observation_events(dag_run)
    assert sorted(event["batches"]) == sorted(
        r[0] for r in query("SELECT batch_id FROM batches WHERE status = 'loaded'")
    )
    assert event["new_rows"] == query("SELECT COUNT(*) FROM observations")[0][0]
    assert big_size > 20_000_000


def _validation_memory(path: Path, tmp_path: Path) -> dict:
    """Peak memory of validate_file on `path` in a fresh process, above its own baseline
    (imports and the GX context, measured on a small file first)."""
    import os
    import subprocess
    import sys

    code = (
        "import json, sys, resource\n"
        "from pathlib import Path\n"
        "from mlops.ingest import pipeline as ingest\n"
        "ingest.validate_file(Path(sys.argv[2]), Path(sys.argv[3] + '.small'), 'small')\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "r = ingest.validate_file(Path(sys.argv[1]), Path(sys.argv[3]), 'large')\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps({'growth_mb': (peak - base) / 1024, 'rows': r['rows_kept']}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path), str(BAD / "few_bad_rows.csv"), str(tmp_path / f"{path.stem}.parquet")],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT / "plugins"), "MLOPS__VALIDATION__CHUNK_ROWS": "50000"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_large_file_is_streamed_with_bounded_memory(tmp_path):
    """A file four times larger needs about the same memory: it is read in chunks, not whole.
    Measured (peak RSS of a fresh process), not assumed."""
    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    small_size, large_size = _large_csv(small, 150_000), _large_csv(large, 600_000)
    small_mem, large_mem = _validation_memory(small, tmp_path), _validation_memory(large, tmp_path)
    print(f"files {small_size / 1e6:.0f} MB and {large_size / 1e6:.0f} MB: peak growth {small_mem} / {large_mem}")
    assert (small_mem["rows"], large_mem["rows"]) == (150_000, 600_000)
    extra_file_mb = (large_size - small_size) / 1e6
    # Reading whole, memory would grow by more than the extra bytes (a DataFrame is larger than
    # its CSV); streamed, only small per-chunk state remains.
    assert large_mem["growth_mb"] - small_mem["growth_mb"] < extra_file_mb / 2, (extra_file_mb, small_mem, large_mem)


def test_sensor_defers_until_a_file_lands_then_alert_and_replay(run_dag, dagbag, fresh, webhook, monkeypatch):
    """The run starts with an empty landing area: the sensor defers (its trigger runs inline under
    dag.test) and wakes up when a file lands. The file is bad: quarantined, alert posted to the
    webhook. After relaxing the row policy, a replay of the quarantined copy loads it."""
    import threading

    # Defer at once instead of poking in the worker first (ingest.sensor_poke_before_defer_seconds).
    monkeypatch.setattr(dagbag.dags["ingest"].get_task("wait_for_landing"), "poke_before_defer", 0)

    name = "out_of_range.csv"
    key = f"{STORAGE.landing_prefix}{name}"
    body = (BAD / name).read_bytes()
    dropper = threading.Timer(3.0, _put, args=(fresh, key, body))
    dropper.start()
    try:
        dag_run = run_dag("ingest")
    finally:
        dropper.cancel()
    states = task_states(dag_run, by_map_index=True)
    assert states["wait_for_landing"] == "success" and states["ingest_files[0]"] == "failed", states
    (batch,) = ingest.batches_for_key(key)
    assert batch["status"] == "quarantined" and "Humidity" in batch["reason"]
    alerts = [a for a in webhook if "ingest.ingest_files" in a["subject"]]
    assert alerts and name in alerts[0]["body"] and "expect_column_values_to_be_between" in alerts[0]["body"]
    assert states["fail_if_a_file_failed"] == "failed" and dag_run.state == "failed", states
    assert not [a for a in webhook if "fail_if_a_file_failed" in a["subject"]]  # one alert per failure, not two

    set_config(monkeypatch, MLOPS__VALIDATION__MAX_BAD_ROW_FRACTION="0.5")
    quarantined = f"{STORAGE.quarantine_prefix}{batch['batch_id']}/{name}"
    dag_run = run_dag("ingest", conf={"object_key": quarantined})
    states = task_states(dag_run, by_map_index=True)
    assert dag_run.state == "success", states
    assert states["wait_for_landing"] == "skipped"
    (batch,) = ingest.batches_for_key(key)
    assert batch["status"] == "loaded" and batch["rows_dropped"] == 25, batch
    assert query("SELECT COUNT(*) FROM observations WHERE batch_id = :b", b=batch["batch_id"]) == [(75,)]


def test_replay_of_a_missing_object_fails_the_run(run_dag, fresh):
    """A failed list_objects leaves ingest_files upstream_failed; the run must still end failed."""
    dag_run = run_dag("ingest", conf={"object_key": f"{STORAGE.landing_prefix}never-landed.csv"})
    states = task_states(dag_run, by_map_index=True)
    assert dag_run.state == "failed", states
    assert states["list_objects"] == "failed" and states["fail_if_a_file_failed"] == "failed", states
    assert states["announce_observations"] == "skipped", states
    assert _observation_events(dag_run) == []


def _turku_month(month: str) -> bytes:
    raw = pd.read_csv(TURKU, dtype=str, keep_default_na=False)
    return raw[raw["Timestamp"].str.startswith(month)].drop_duplicates("Timestamp").to_csv(index=False).encode()


def test_same_content_under_two_keys_at_once_is_loaded_once(fresh, monkeypatch):
    """Two tasks validate the same content at the same moment (a barrier holds both after
    validation, past the early duplicate check): the database claim lets exactly one load."""
    import threading

    body = _turku_month("2016-04")
    keys = [f"{STORAGE.landing_prefix}copy-{i}.csv" for i in range(2)]
    for key in keys:
        _put(fresh, key, body)
    barrier = threading.Barrier(2, timeout=60)
    validate = ingest.validate_file

    def validate_then_wait(*args, **kwargs):
        result = validate(*args, **kwargs)
        barrier.wait()
        return result

    monkeypatch.setattr(ingest, "validate_file", validate_then_wait)
    outcomes: dict[str, object] = {}

    def run(key):
        try:
            outcomes[key] = ingest.process_object(key)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcomes[key] = exc

    threads = [threading.Thread(target=run, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    statuses = sorted(
        str(outcomes[k].get("status")) if isinstance(outcomes[k], dict) else repr(outcomes[k]) for k in keys
    )
    assert statuses == ["duplicate", "loaded"], outcomes
    rows = query("SELECT status, COUNT(*) FROM batches GROUP BY status ORDER BY status")
    assert rows == [("duplicate", 1), ("loaded", 1)]
    (loaded,) = query("SELECT batch_id FROM batches WHERE status = 'loaded'")
    assert query("SELECT COUNT(DISTINCT batch_id) FROM observations") == [(1,)]
    assert query("SELECT batch_id FROM observations LIMIT 1") == [loaded]
    assert _keys(fresh, STORAGE.landing_prefix) == []


def test_a_reupload_during_ingest_stays_and_becomes_its_own_batch(fresh, monkeypatch):
    """The producer overwrites the key between validation and delete: the newer version is not
    deleted unseen; the next run loads it as its own batch."""
    key = f"{STORAGE.landing_prefix}reupload.csv"
    first, corrected = _turku_month("2016-05"), _turku_month("2016-06")
    _put(fresh, key, first)
    validate = ingest.validate_file

    def validate_then_overwrite(*args, **kwargs):
        result = validate(*args, **kwargs)
        _put(fresh, key, corrected)
        return result

    monkeypatch.setattr(ingest, "validate_file", validate_then_overwrite)
    assert ingest.process_object(key)["status"] == "loaded"
    assert _keys(fresh, STORAGE.landing_prefix) == [key]
    assert fresh.get_object(Bucket=STORAGE.bucket, Key=key)["Body"].read() == corrected

    monkeypatch.setattr(ingest, "validate_file", validate)
    second = ingest.process_object(key)
    assert second["status"] == "loaded" and second["batch_id"] == ingest.batch_id_of_content(key, corrected)
    assert _keys(fresh, STORAGE.landing_prefix) == []
    assert len(ingest.batches_for_key(key)) == 2


@pytest.mark.warehouses("postgres")  # the object store's behaviour: one warehouse is enough
def test_the_object_store_refuses_a_delete_with_a_stale_etag(fresh):
    """What delete_if_unchanged relies on besides its HEAD: a DELETE carrying If-Match with the
    ETag of an overwritten version must fail (412) and leave the newer version in place."""
    from botocore.exceptions import ClientError

    key = f"{STORAGE.landing_prefix}if-match.csv"
    _put(fresh, key, b"first")
    stale = fresh.head_object(Bucket=STORAGE.bucket, Key=key)["ETag"]
    _put(fresh, key, b"second")
    with pytest.raises(ClientError) as refused:
        fresh.delete_object(Bucket=STORAGE.bucket, Key=key, IfMatch=stale)
    assert refused.value.response["Error"]["Code"] in ("PreconditionFailed", "412")
    assert fresh.get_object(Bucket=STORAGE.bucket, Key=key)["Body"].read() == b"second"


@pytest.mark.warehouses("postgres")  # the object store's behaviour: one warehouse is enough
def test_the_raw_copy_holds_the_version_read_even_when_the_landing_key_was_overwritten(fresh, tmp_path, monkeypatch):
    """The raw copy is a server-side copy of the version read (its ETag as the condition); a
    version written meanwhile makes the copy fail its condition, and the local file, whose
    hashes were taken, is uploaded instead. Either way the raw object holds what was read."""
    uploads = []

    class Recording:  # the real client; its uploads are recorded
        def __getattr__(self, name):
            return getattr(fresh, name)

        def put_object(self, **kwargs):
            uploads.append(kwargs["Key"])
            return fresh.put_object(**kwargs)

    monkeypatch.setattr(ingest, "_client", Recording)
    content = b"a,b\n1,2\n" * 1000
    downloads = []
    for name in ("copied", "overwritten"):
        _put(fresh, f"{STORAGE.landing_prefix}{name}.csv", content)
        (tmp_path / name).mkdir()
        downloads.append(ingest.download(f"{STORAGE.landing_prefix}{name}.csv", tmp_path / name))
    _put(fresh, f"{STORAGE.landing_prefix}overwritten.csv", b"a,b\n9,9\n")
    for local in downloads:
        raw_key = f"{STORAGE.raw_prefix}test/{local.path.parent.name}.csv"
        ingest.put_verified(local, raw_key)
        stored = fresh.get_object(Bucket=STORAGE.bucket, Key=raw_key)
        assert stored["Body"].read() == content and stored["Metadata"]["sha256"] == local.sha256
        ingest.put_verified(local, raw_key)  # a rerun finds the copy and keeps it
    assert uploads == [f"{STORAGE.raw_prefix}test/overwritten.csv"]  # the other one was copied


def test_sensor_and_listing_ignore_markers_placeholders_and_other_suffixes(fresh):
    """Folder markers, zero-length objects and other suffixes wake neither the sensor's poke nor
    its trigger, and the listing reports them once; a real file wakes both."""
    import asyncio

    from airflow.providers.amazon.aws.triggers.s3 import S3KeyTrigger

    from mlops.ingest.sensors import LandingObjectSensor

    for key, body in [("some/", b""), ("notes.txt", b"hello"), ("dump.xlsx", b"PK")]:
        _put(fresh, f"{STORAGE.landing_prefix}{key}", body)
    sensor = LandingObjectSensor(
        task_id="probe", bucket_name=STORAGE.bucket, bucket_key=ingest.sensor_pattern(), aws_conn_id="object_store"
    )

    def trigger_fires() -> bool:
        trigger = S3KeyTrigger(
            bucket_name=STORAGE.bucket,
            bucket_key=ingest.sensor_pattern(),
            wildcard_match=True,
            aws_conn_id=get_config().connections.object_store,
            poke_interval=0.5,
        )

        async def first_event():
            async for event in trigger.run():
                return event.payload

        try:
            return asyncio.run(asyncio.wait_for(first_event(), 3))["status"] == "success"
        except TimeoutError:
            return False

    assert not trigger_fires()  # the trigger's wildcard already leaves them out
    # A zero-length placeholder with the right suffix may fire the trigger, but the sensor's
    # execute_complete asks poke (the listing's predicate) and defers again.
    _put(fresh, f"{STORAGE.landing_prefix}placeholder.csv", b"")
    import logging

    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logging.getLogger("mlops.ingest.pipeline").addHandler(handler)
    try:
        assert ingest.landing_keys() == []
    finally:
        logging.getLogger("mlops.ingest.pipeline").removeHandler(handler)
    assert len(messages) == 1 and "4 landing object(s) are not files to ingest" in messages[0], messages
    assert not sensor.poke({})

    _put(fresh, f"{STORAGE.landing_prefix}good.csv.gz", gzip.compress(_turku_month("2016-07")))
    assert ingest.landing_keys() == [f"{STORAGE.landing_prefix}good.csv.gz"]
    assert sensor.poke({})
    assert trigger_fires()


# ---------------------------------------------------------------- loading during validation

OBSERVATION_COLUMNS = ", ".join(f'"{c}"' for c in get_config().dataset.columns)
SNAPSHOT = {
    "observations": f'SELECT {OBSERVATION_COLUMNS}, batch_id FROM observations ORDER BY "Timestamp"',
    "batches": "SELECT batch_id, object_key, checksum, raw_uri, rows_in, rows_kept, rows_dropped, status, reason,"
    " report_uri, announced_at IS NULL FROM batches ORDER BY batch_id",
    "conflicts": 'SELECT batch_id, "Timestamp", stored_batch_id, stored_values, new_values, action'
    " FROM observation_conflicts ORDER BY 1, 2",
}


def _hours(rows: int, bad_every: int = 0):
    """`rows` distinct ordered hours of the example (text as in the file); every bad_every-th
    row gets text in a float column."""
    raw = pd.read_csv(TURKU, dtype=str, keep_default_na=False).drop_duplicates("Timestamp")
    frame = raw.sort_values("Timestamp").iloc[:rows].reset_index(drop=True)
    if bad_every:
        frame.loc[::bad_every, "Temperature_C"] = "n/a"
    return frame


def _files(scenario: str) -> list:
    """The files of a scenario, loaded in this order (validation.chunk_rows is 1000 in the test)."""
    rows = _hours(2500, bad_every=97)
    if scenario == "in order, three chunks":
        return [rows]
    if scenario == "a timestamp repeated with other values in the second chunk":
        repeat = rows.iloc[[1500]].assign(Temperature_C="31.5")
        return [pd.concat([rows.iloc[:1501], repeat, rows.iloc[1501:]])]
    if scenario == "chunks overlapping in time (shuffled)":
        return [rows.sample(frac=1, random_state=3)]
    if scenario == "overlapping a stored batch with other values":
        later = rows.iloc[1200:].copy()
        later.loc[[1200, 1201, 1300], "Humidity"] = "0.01"
        return [rows.iloc[:1500], later]
    assert scenario == "quarantined: too many bad rows"
    return [_hours(2500, bad_every=2)]


def _load_scenario(s3, scenario: str, during: bool) -> dict:
    """Empty the warehouse tables, ingest the scenario's files with the load during validation
    on or off; the tables read back (without the load times) and how often load_batch ran."""
    from mlops.ingest import load

    with load.engine().begin() as conn:
        for table in ("observations", "batches", "observation_conflicts"):
            conn.execute(sa.text(f"DELETE FROM {table}"))
    staged_loads = []
    load_batch = ingest.load_batch
    settings = {"MLOPS__INGEST__LOAD_DURING_VALIDATION": str(during).lower(), "MLOPS__VALIDATION__CHUNK_ROWS": "1000"}
    with config_env(**settings), pytest.MonkeyPatch.context() as patch:
        patch.setattr(ingest, "load_batch", lambda *a: staged_loads.append(a) or load_batch(*a))
        for i, frame in enumerate(_files(scenario)):
            key = f"{STORAGE.landing_prefix}during/{i}.csv"
            _put(s3, key, frame.to_csv(index=False).encode())
            with contextlib.suppress(ingest.BadBatch):
                ingest.process_object(key)
    return {name: query(sql) for name, sql in SNAPSHOT.items()} | {"load_batch calls": len(staged_loads)}


@pytest.mark.warehouses("postgres")  # the load during validation is PostgreSQL's only
@pytest.mark.parametrize(
    "scenario, streamed",
    [
        ("in order, three chunks", True),
        ("a timestamp repeated with other values in the second chunk", False),
        ("chunks overlapping in time (shuffled)", False),
        ("overlapping a stored batch with other values", True),
        ("quarantined: too many bad rows", True),
    ],
)
def test_loading_during_validation_leaves_the_warehouse_as_loading_after_it(fresh, scenario, streamed):
    """Every table equals the load after validation's, row for row, whether the rows went in
    while the file was validated (streamed) or validation took them back (a second pass into
    the staging file, then load_batch)."""
    after = _load_scenario(fresh, scenario, during=False)
    during = _load_scenario(fresh, scenario, during=True)
    assert after["load_batch calls"] == (0 if "quarantined" in scenario else len(_files(scenario)))
    expected_calls = 0 if streamed else len(_files(scenario))
    assert during.pop("load_batch calls") == expected_calls
    after.pop("load_batch calls")
    assert during == after
    if "quarantined" in scenario:
        assert after["observations"] == [] and [b[7] for b in after["batches"]] == ["quarantined"]
    else:
        assert len(after["observations"]) > 2000
    if "stored batch" in scenario:
        assert len(after["conflicts"]) == 3


@pytest.mark.warehouses("postgres")
@pytest.mark.parametrize("crash_at", ["ingest_chunk_loaded", "ingest_before_commit"])
def test_an_ingest_killed_while_loading_during_validation_leaves_nothing_and_the_retry_loads_it(
    fresh, tmp_path, crash_at
):
    """SIGKILL after a chunk went in, or right before the commit: no row, no batch; the landing
    object stays, and the retry leaves the tables as an uninterrupted ingest does."""
    import os
    import subprocess
    import sys

    from mlops.config import PROJECT_ROOT
    from mlops.crashpoints import CRASH_AT_ENV

    scenario = "in order, three chunks"
    uninterrupted = _load_scenario(fresh, scenario, during=True)
    key = f"{STORAGE.landing_prefix}during/0.csv"
    with config_env(MLOPS__VALIDATION__CHUNK_ROWS="1000"):
        _put(fresh, key, _files(scenario)[0].to_csv(index=False).encode())
        with ingest.shared_connections(), ingest._engine().begin() as conn:
            for table in ("observations", "batches", "observation_conflicts"):
                conn.execute(sa.text(f"DELETE FROM {table}"))
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "plugins"), CRASH_AT_ENV: crash_at}
        code = f"from mlops.ingest.pipeline import process_object; process_object({key!r})"
        assert subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, timeout=300).returncode == -9
        assert [query(sql) for sql in SNAPSHOT.values()] == [[], [], []]
        assert _keys(fresh, key) == [key]
        ingest.process_object(key)
    assert {name: query(sql) for name, sql in SNAPSHOT.items()} == {
        k: v for k, v in uninterrupted.items() if k != "load_batch calls"
    }
