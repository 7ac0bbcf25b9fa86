"""Airflow for the stack: `airflow standalone` (LocalExecutor), or its components and Celery
workers as separate processes (the celery topology)."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

from stack.process import _log_file, _pid_file, _running, _spawn, poll_until, wait_http
from stack.settings import BIN, Settings


def write_passwords_file(path: Path, user: str, password: str) -> None:
    """The simple auth manager's passwords file ({user: password}), readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({user: password}))
    path.chmod(0o600)


def start_airflow(settings: Settings) -> subprocess.Popen:
    """Airflow standalone (api-server, scheduler, dag-processor, triggerer; LocalExecutor)."""
    env = settings.airflow_env()
    write_passwords_file(
        Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]), settings.airflow_user, settings.airflow_password
    )
    proc = _spawn(settings, "airflow", [str(BIN / "airflow"), "standalone"], env)
    wait_http(f"{settings.airflow_url}/api/v2/monitor/health", proc, 300, "Airflow", _log_file(settings, "airflow"))
    _wait_airflow_healthy(settings, proc, "airflow")
    return proc


# The parts of Airflow's /monitor/health that must all say "healthy".
HEALTH_PARTS = ("metadatabase", "scheduler", "dag_processor", "triggerer")


def airflow_health(settings: Settings) -> dict:
    """Airflow's /api/v2/monitor/health: {part: {"status": ...}} (raises OSError when it does not answer)."""
    with urllib.request.urlopen(f"{settings.airflow_url}/api/v2/monitor/health", timeout=5) as resp:
        return json.load(resp)


def _wait_airflow_healthy(settings: Settings, proc: subprocess.Popen, log_name: str, timeout: float = 180) -> None:
    """Poll /monitor/health until every part of HEALTH_PARTS is healthy; fail early if `proc` exited."""

    def healthy() -> bool:
        status = airflow_health(settings)
        if all((status.get(p) or {}).get("status") == "healthy" for p in HEALTH_PARTS):
            return True
        raise ValueError(f"not all healthy: {status}")  # the last status ends up in the timeout's message

    log = _log_file(settings, log_name)
    poll_until(healthy, timeout, "Airflow components", proc=proc, log=log, retry_on=(OSError, ValueError))


AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def worker_names(settings: Settings) -> list[str]:
    """The Celery workers' names: w1 .. wN (settings.celery_workers)."""
    return [f"w{i}" for i in range(1, settings.celery_workers + 1)]


def start_airflow_components(settings: Settings) -> subprocess.Popen:
    """Migrate the metadata DB, then start each Airflow component and the Celery workers."""
    env = settings.airflow_env()
    write_passwords_file(
        Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]), settings.airflow_user, settings.airflow_password
    )
    migrate = subprocess.run(
        [str(BIN / "airflow"), "db", "migrate"], check=False, env={**os.environ, **env}, capture_output=True, text=True
    )
    if migrate.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{migrate.stdout[-2000:]}{migrate.stderr[-3000:]}")
    procs = {
        name: _spawn(settings, f"airflow-{name}", [str(BIN / "airflow"), name], env) for name in AIRFLOW_COMPONENTS
    }
    for name in worker_names(settings):
        start_worker(settings, name)
    api = procs["api-server"]
    wait_http(
        f"{settings.airflow_url}/api/v2/monitor/health", api, 300, "Airflow", _log_file(settings, "airflow-api-server")
    )
    _wait_airflow_healthy(settings, api, "airflow-api-server")
    for name in worker_names(settings):
        wait_worker(settings, name)
    return api


def start_worker(settings: Settings, name: str) -> subprocess.Popen:
    """One Celery worker; its name shows in the hostname of the task instances it runs."""
    env = {**settings.airflow_env(), "MLOPS_WORKER_NAME": name}
    argv = [str(BIN / "airflow"), "celery", "worker", "--celery-hostname", f"{name}@%h"]
    # Logs are files under the shared AIRFLOW_HOME: no log server (and no port clash) per worker.
    argv += ["--concurrency", str(settings.worker_concurrency), "--skip-serve-logs"]
    _log_file(settings, f"worker-{name}").unlink(missing_ok=True)
    return _spawn(settings, f"worker-{name}", argv, env)


def wait_worker(settings: Settings, name: str, timeout: float = 180) -> None:
    """Wait for the worker's "ready" line; fail early if it exited."""
    log = _log_file(settings, f"worker-{name}")
    pid = int(_pid_file(settings, f"worker-{name}").read_text())

    def ready() -> bool:
        text = log.read_text(errors="replace") if log.exists() else ""
        if f"{name}@" in text and " ready." in text:
            return True
        if not _running(pid):
            raise RuntimeError(f"Celery worker {name} exited while starting. Log tail:\n{text[-3000:]}")
        return False

    poll_until(ready, timeout, f"Celery worker {name} (see {log})")
