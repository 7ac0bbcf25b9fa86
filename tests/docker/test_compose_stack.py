"""docker-compose.yaml brought up for real, from local base images (no registry needed).

Builds the local stand-in base images (scripts/local_images.py: debootstrap + docker import),
the project's image from the Dockerfile on top of them, brings the whole compose stack up on
the host's network bound to loopback on free ports (docker-compose.yaml as `compose config`
resolves it, with `network_mode: host` and without published ports), waits for
the health checks, runs the health_check DAG through the REST API on a Celery worker, and
takes everything down with its volumes. The images stay, as the build cache of the next run.

Needs root and a Docker engine (Debian's docker.io, installed and started when missing);
where none can start, the test is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from airflow_api import AirflowClient
from stack import free_port as _free_port
from stack import free_weed_base as _free_weed_base

pytestmark = [pytest.mark.integration, pytest.mark.docker]
ROOT = Path(__file__).resolve().parents[2]


def _run(argv: list[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)


@pytest.fixture(scope="module")
def compose_stack(docker_engine, project_image):
    from cryptography.fernet import Fernet

    compose = docker_engine
    images = project_image
    env = {
        **os.environ,
        **images,
        "BIND_HOST": "127.0.0.1",
        **dict.fromkeys(
            ["PG_HOST", "REDIS_HOST", "S3_HOST", "MLFLOW_HOST", "AIRFLOW_HOST", "AIRFLOW_PUBLIC_HOST"], "127.0.0.1"
        ),
        "PG_PORT": str(_free_port()),
        "REDIS_PORT": str(_free_port()),
        "S3_PORT": str(_free_port()),
        "WEED_BASE_PORT": str(_free_weed_base()),
        "MLFLOW_PORT": str(_free_port()),
        "AIRFLOW_PORT": str(_free_port()),
        "SCHEDULER_HEALTH_PORT": str(_free_port()),
        "WORKER_CONCURRENCY": "2",
        "API_WORKERS": "1",
        "POSTGRES_PASSWORD": secrets.token_hex(12),
        "REDIS_PASSWORD": secrets.token_hex(12),
        "S3_ACCESS_KEY": "mlops" + secrets.token_hex(6),
        "S3_SECRET_KEY": secrets.token_urlsafe(24),
        "AIRFLOW_ADMIN_PASSWORD": secrets.token_urlsafe(12),
        "AIRFLOW_JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW_FERNET_KEY": Fernet.generate_key().decode(),
    }
    project = f"mlopstest{secrets.token_hex(4)}"
    workdir = Path(tempfile.mkdtemp(prefix="mlops-compose-"))
    base = [*compose, "-p", project, "-f", str(_host_network_file(compose, env, workdir))]
    try:
        t0 = time.monotonic()
        up = _run([*base, "up", "-d", "--no-build"], timeout=1200, env=env, cwd=ROOT)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        client = AirflowClient(f"http://127.0.0.1:{env['AIRFLOW_PORT']}", "admin", env["AIRFLOW_ADMIN_PASSWORD"])
        _wait_healthy(client, timeout=600)
        print(f"compose stack healthy in {time.monotonic() - t0:.0f}s")
        yield client, base, env
    finally:
        logs = _run([*base, "logs", "--no-color", "--tail", "60"], env=env, cwd=ROOT)
        print(logs.stdout[-20000:])
        down = _run([*base, "down", "-v", "--remove-orphans"], timeout=600, env=env, cwd=ROOT)
        shutil.rmtree(workdir, ignore_errors=True)
        assert down.returncode == 0, down.stderr[-3000:]


def _host_network_file(compose: list[str], env: dict[str, str], workdir: Path) -> Path:
    """docker-compose.yaml, resolved by compose itself, on the host's network: containers here
    may talk to each other only on loopback (every service binds BIND_HOST=127.0.0.1)."""
    import yaml

    resolved = _run([*compose, "-f", str(ROOT / "docker-compose.yaml"), "config"], env=env, cwd=ROOT)
    assert resolved.returncode == 0, resolved.stderr[-3000:]
    config = yaml.safe_load(resolved.stdout)
    for service in config["services"].values():
        service.pop("ports", None)
        service.pop("networks", None)
        service["network_mode"] = "host"
    config.pop("networks", None)
    path = workdir / "docker-compose.hostnet.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _wait_healthy(client: AirflowClient, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        try:
            status = client.request("GET", "/monitor/health")
            parts = ("metadatabase", "scheduler", "dag_processor", "triggerer")
            if all((status.get(p) or {}).get("status") == "healthy" for p in parts):
                return
        except Exception as exc:  # the api-server is still starting
            status = repr(exc)
        time.sleep(5)
    raise TimeoutError(f"compose stack not healthy within {timeout:.0f}s: {json.dumps(status, default=str)[:2000]}")


def test_compose_stack_runs_the_health_check_on_a_celery_worker(compose_stack):
    client, base, env = compose_stack
    client.wait_for_dags({"health_check"}, timeout=300)
    run_id = client.trigger("health_check")
    run = client.wait_for_run("health_check", run_id, timeout=600)
    tis = client.task_instances("health_check", run_id)
    assert run["state"] == "success", [(ti["task_id"], ti["state"]) for ti in tis] + _failed_logs(client, run_id, tis)
    assert all(ti["hostname"] for ti in tis)
    # Every service reports healthy to Docker (the checks in docker-compose.yaml work).
    ps = _run([*base, "ps"], env=env, cwd=ROOT).stdout
    assert "unhealthy" not in ps, ps


def _failed_logs(client: AirflowClient, run_id: str, tis: list[dict]) -> list[str]:
    """The end of the log of each failed task, for the assertion message."""
    tails = []
    for ti in tis:
        if ti["state"] == "failed":
            path = f"/dags/health_check/dagRuns/{run_id}/taskInstances/{ti['task_id']}/logs/{ti['try_number']}"
            try:
                content = client.request("GET", path + "?full_content=true").get("content")
            except Exception as exc:
                content = repr(exc)
            print(f"--- log of {ti['task_id']}:", json.dumps(content, default=str, indent=1))
            tails.append(f"{ti['task_id']}: {json.dumps(content, default=str)[-2500:]}")
    return tails
