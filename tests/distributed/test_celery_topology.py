"""The production topology on one machine: PostgreSQL, Redis, Airflow with two Celery workers.

Starts it exactly as `make prod-up` does (`scripts/stack --topology celery up`) on free loopback
ports in a temporary state folder, runs DAGs through the REST API and checks that

* task instances ran on both workers (each worker names itself in the hostname);
* killing one worker (SIGKILL, a crash, not a shutdown) in the middle of a run leaves the
  run green: the scheduler notices the missing heartbeat, the retries go to the live worker,
  and the warehouse holds exactly one row per item (no duplicates from the killed attempt);
* `down` leaves no process behind.

The DAG folder is the project's dags/ plus a test-only DAG (tests/distributed/dags/).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import stack as stack_module
from airflow_api import AirflowClient
from stack import free_port as _free_port
from stack import free_weed_base as _free_weed_base

pytestmark = [pytest.mark.integration, pytest.mark.distributed]
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = str(ROOT / "scripts" / "stack")


@pytest.fixture(scope="module")
def celery_stack():
    try:
        stack_module.ensure_system_packages()
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"PostgreSQL and Redis are not installed and cannot be installed here: {exc}")
    # Directly under the temporary folder: PostgreSQL's user must be able to reach its data.
    tmp = Path(tempfile.mkdtemp(prefix="mlops-celery-"))
    tmp.chmod(0o711)
    dags = tmp / "dags"
    dags.mkdir()
    for dag_file in [*(ROOT / "dags").glob("*.py"), *(Path(__file__).parent / "dags").glob("*.py")]:
        (dags / dag_file.name).symlink_to(dag_file)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLOPS"))},
        "MLOPS_STATE_DIR": str(tmp / "state"),
        "MLOPS_DAGS_FOLDER": str(dags),
        "MLOPS_AIRFLOW_PORT": str(_free_port()),
        "MLOPS_MLFLOW_PORT": str(_free_port()),
        "MLOPS_S3_PORT": str(_free_port()),
        "MLOPS_WEED_BASE_PORT": str(_free_weed_base()),
        "MLOPS_PG_PORT": str(_free_port()),
        "MLOPS_REDIS_PORT": str(_free_port()),
        # The whole-loop test trains several times: a small search keeps it quick.
        "MLOPS__MODEL__FAMILIES": "[logistic_regression, hist_gradient_boosting]",
        "MLOPS__MODEL__SEARCH_ITERATIONS": "2",
        # The history's holdout (June 2015) holds 16 rows without rain: a lower evidence floor
        # lets it make the first champion, so two months exercise scoring and drift too.
        "MLOPS__PROMOTION__MIN_HOLDOUT_NEGATIVES": "10",
    }
    settings = stack_module.Settings.from_env(environ=env, topology="celery")
    groups: dict[str, int] = {}
    try:
        up = subprocess.run(
            [sys.executable, SCRIPT, "--topology", "celery", "up"], env=env, capture_output=True, text=True, timeout=900
        )
        assert up.returncode == 0, up.stdout + up.stderr
        pids = settings.state_dir / "pids"
        groups = {name: int((pids / f"{name}.pid").read_text()) for name in stack_module.services(settings)}
        client = AirflowClient(settings.airflow_url, settings.airflow_user, settings.airflow_password)
        client.wait_for_dags({"health_check", "worker_probe"})
        yield settings, client, env
    finally:
        # Groups of workers killed by a test are gone already; down stops the rest by pid file.
        down = subprocess.run(
            [sys.executable, SCRIPT, "--topology", "celery", "down"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        leftovers = {name: stack_module.group_members(pgid) for name, pgid in groups.items()}
        for members in leftovers.values():
            for pid in members:
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)
        assert down.returncode == 0, down.stdout + down.stderr
        assert leftovers == dict.fromkeys(groups, []), f"processes left after down: {leftovers}"


def _worker(hostname: str | None) -> str | None:
    return hostname.split("@")[0] if hostname else None


def test_tasks_spread_over_both_workers(celery_stack):
    settings, client, _ = celery_stack
    run_ids = [client.trigger("health_check") for _ in range(2)]
    workers = set()
    for run_id in run_ids:
        assert client.wait_for_run("health_check", run_id, timeout=300)["state"] == "success"
        workers |= {_worker(ti["hostname"]) for ti in client.task_instances("health_check", run_id)}
    assert workers == {"w1", "w2"}


def _warehouse_rows(settings, sql: str) -> list[tuple]:
    import psycopg2

    conn = psycopg2.connect(settings.pg_url("warehouse", "postgresql"))
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def test_whole_loop_runs_end_to_end_across_both_workers(celery_stack):
    """The main job (scripts/demo.py, a REST + S3 client) on the celery topology: the history
    and two months land in the object store; ingest, train (with the promotion gate),
    batch_score and drift_check run on the workers against PostgreSQL."""
    settings, client, env = celery_stack
    demo = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--topology", "celery"]
        + ["--max-months", "2", "--months-per-drop", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert demo.returncode == 0, demo.stdout[-6000:] + demo.stderr[-6000:]
    print(demo.stdout[-4000:])

    workers: dict[str, set] = {}
    for dag_id in ("ingest", "train", "batch_score", "drift_check"):
        runs = [r for r in client.dag_runs(dag_id, limit=50) if r["state"] == "success"]
        assert runs, f"no successful {dag_id} run: {client.dag_runs(dag_id, limit=50)}"
        for run in runs:
            for ti in client.task_instances(dag_id, run["dag_run_id"]):
                if ti["hostname"]:
                    workers.setdefault(dag_id, set()).add(_worker(ti["hostname"]))
    # Tasks of the loop ran on both workers: nothing relied on one worker's disk or memory.
    assert set().union(*workers.values()) == {"w1", "w2"}, workers

    ((loaded,),) = _warehouse_rows(settings, "SELECT COUNT(*) FROM batches WHERE status = 'loaded'")
    assert loaded == 3  # the history and two months
    ((total, distinct, unscored),) = _warehouse_rows(
        settings,
        'SELECT COUNT(*), COUNT(DISTINCT (batch_id, "Timestamp", model_version, role)),'
        " (SELECT COUNT(*) FROM observations o WHERE NOT EXISTS (SELECT 1 FROM predictions p"
        ' WHERE p.batch_id = o.batch_id AND p."Timestamp" = o."Timestamp" AND p.role = \'champion\'))'
        " FROM predictions",
    )
    assert total > 0 and total == distinct and unscored == 0
    decisions = _warehouse_rows(settings, "SELECT outcome FROM model_decisions")
    assert ("first_champion",) in decisions
    drift_runs = _warehouse_rows(settings, "SELECT rule_fired FROM drift_runs")
    assert len(drift_runs) >= 2  # one drift_check per month


def test_killing_a_worker_mid_run_leaves_the_run_green_without_duplicates(celery_stack):
    import psycopg2

    settings, client, _ = celery_stack
    items = 6
    run_id = client.trigger("worker_probe", {"items": items, "seconds": 20})
    victim = "w1"
    deadline = time.monotonic() + 300
    while True:
        running = [
            ti
            for ti in client.task_instances("worker_probe", run_id)
            if ti["task_id"] == "hold" and ti["state"] == "running" and _worker(ti["hostname"]) == victim
        ]
        if running:
            break
        assert time.monotonic() < deadline, "no task started on the worker to kill"
        time.sleep(1)
    # A crash, not a shutdown: the worker, its pool and the tasks it runs die at once.
    pgid = int((settings.state_dir / "pids" / f"worker-{victim}.pid").read_text())
    os.killpg(pgid, signal.SIGKILL)

    run = client.wait_for_run("worker_probe", run_id, timeout=600)
    tis = [ti for ti in client.task_instances("worker_probe", run_id) if ti["task_id"] == "hold"]
    assert run["state"] == "success", [(ti["map_index"], ti["state"], ti["hostname"]) for ti in tis]
    killed = {ti["map_index"] for ti in running}
    retried = {ti["map_index"] for ti in tis if ti["try_number"] > 1}
    # Every task the dead worker was running was retried, and the retries ran on the live one.
    assert killed <= retried
    assert all(_worker(ti["hostname"]) == "w2" for ti in tis if ti["map_index"] in killed)

    conn = psycopg2.connect(settings.pg_url("warehouse", "postgresql"))
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT item, COUNT(*), MAX(try_number) FROM worker_probe WHERE run_id = %s GROUP BY item ORDER BY item",
                (run_id,),
            )
            rows = cur.fetchall()
    finally:
        conn.close()
    assert [(item, count) for item, count, _ in rows] == [(i, 1) for i in range(items)]
    # The killed attempts had committed their rows; the retries replaced them instead of adding.
    assert {item for item, _, max_try in rows if max_try > 1} >= killed
