"""The two topologies (standalone, celery) as lists of services, and the stack's commands on
them: up (start what is not running or not healthy), down, status; plus the stack's
configuration file and its env file."""

from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path

from mlops.config import DEFAULT_CONFIG_PATH
from stack.airflow import (
    AIRFLOW_COMPONENTS,
    HEALTH_PARTS,
    airflow_health,
    start_airflow,
    start_airflow_components,
    worker_names,
)
from stack.postgres import start_postgres
from stack.process import service_pid, stop_process
from stack.services import ensure_system_packages, start_mlflow, start_object_store, start_redis
from stack.settings import HOST, Settings


def services(settings: Settings) -> list[str]:
    """The processes of the topology, in start order (stopped in reverse)."""
    if settings.topology == "celery":
        airflow = [f"airflow-{c}" for c in AIRFLOW_COMPONENTS] + [f"worker-{w}" for w in worker_names(settings)]
        return ["postgres", "redis", "seaweedfs", "mlflow", *airflow]
    return ["postgres"] * settings.uses_postgres + ["seaweedfs", "mlflow", "airflow"]


SERVICES = ("airflow", "mlflow", "seaweedfs")


class ConfigMismatch(RuntimeError):
    """MLOPS_CONFIG names another configuration than the one the stack's state was made with."""


def stack_config(settings: Settings, environ: dict[str, str] | None = None) -> Path:
    """The configuration file of this stack: the one recorded in its state (<state>/config),
    else MLOPS_CONFIG, else include/config/pipeline.yaml. Absolute, since services run
    elsewhere. Raises ConfigMismatch when MLOPS_CONFIG names another file than the recorded one."""
    env = os.environ if environ is None else environ
    requested = Path(env["MLOPS_CONFIG"]).resolve() if env.get("MLOPS_CONFIG") else None
    record = settings.state_dir / "config"
    if record.exists():
        recorded = Path(record.read_text().strip())
        if requested is not None and requested != recorded:
            raise ConfigMismatch(
                f"the stack in {settings.state_dir} was started with the configuration {recorded}, "
                f"but MLOPS_CONFIG names {requested}. Unset MLOPS_CONFIG (or set it to {recorded}) to "
                "use this stack, or `make reset` to wipe its state, or choose another MLOPS_STATE_DIR."
            )
        return recorded
    return requested or DEFAULT_CONFIG_PATH.resolve()


def use_stack_config(settings: Settings) -> Path:
    """Record the stack's configuration in its state (first start) and export it as
    MLOPS_CONFIG to this process and every service it starts. Raises ConfigMismatch."""
    path = stack_config(settings)
    if not path.is_file():
        raise ConfigMismatch(f"configuration file {path} does not exist")
    (settings.state_dir / "config").write_text(f"{path}\n")
    os.environ["MLOPS_CONFIG"] = str(path)
    return path


def write_env_file(settings: Settings) -> Path:
    """.stack/env: `source` it to use the airflow CLI, mlflow or boto3 against the stack."""
    env = {
        **settings.airflow_env(),
        "MLFLOW_TRACKING_URI": settings.mlflow_url,
        **settings.mlflow_client_env(),
        "AWS_ENDPOINT_URL_S3": settings.s3_endpoint,
        "AWS_ACCESS_KEY_ID": settings.access_key,
        "AWS_SECRET_ACCESS_KEY": settings.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "MLOPS_CONFIG": str(stack_config(settings)),
    }
    path = settings.state_dir / "env"
    path.write_text("".join(f"export {k}={_shell_quote(v)}\n" for k, v in env.items()))
    path.chmod(0o600)
    return path


def _shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def up(settings: Settings) -> None:
    """Start each service of the topology that is not running, restart one that runs but does not
    answer (probe), then write the env file and print the logins."""
    steps = [
        ("seaweedfs", start_object_store, lambda: f"S3 endpoint {settings.s3_endpoint}"),
        ("mlflow", start_mlflow, lambda: f"MLflow UI   {settings.mlflow_url}"),
        ("airflow", start_airflow, lambda: f"Airflow UI  {settings.airflow_url}"),
    ]
    postgres_step = ("postgres", start_postgres, lambda: f"PostgreSQL  {HOST}:{settings.pg_port}")
    if settings.uses_postgres:
        steps.insert(0, postgres_step)
    if settings.topology == "celery":
        ensure_system_packages()
        steps = [
            postgres_step,
            ("redis", start_redis, lambda: f"Redis       {HOST}:{settings.redis_port}"),
            *steps[1:3],
            (
                "airflow-api-server",
                start_airflow_components,
                lambda: f"Airflow UI  {settings.airflow_url} ({settings.celery_workers} Celery workers)",
            ),
        ]
    for name, start, describe in steps:
        if service_pid(settings, name) is not None:
            healthy, detail = probe(settings, name)
            if healthy:
                print(f"[stack] {name} already running: {describe()}", flush=True)
                continue
            # A process that runs but does not answer (e.g. standalone's scheduler died
            # inside it): stop its whole group and start it again.
            print(f"[stack] {name} runs but is unhealthy ({detail}): restarting it", flush=True)
            # celery: start_airflow_components starts every component and worker again.
            group = [n for n in services(settings) if n.startswith(("airflow-", "worker-"))] or [name]
            for member in group if name == "airflow-api-server" else [name]:
                stop_process(settings, member)
        print(f"[stack] starting {name} ...", flush=True)
        t0 = time.monotonic()
        start(settings)
        print(f"[stack] {name} up in {time.monotonic() - t0:.0f}s: {describe()}", flush=True)
    env_file = write_env_file(settings)
    print(
        f"[stack] Airflow login: {settings.airflow_user} / {settings.airflow_password}\n"
        f"[stack] MLflow login: {settings.mlflow_user} / {settings.mlflow_password}\n"
        f"[stack] S3 access key: {settings.access_key} (secret in {settings.state_dir / 'credentials.json'})\n"
        f"[stack] `source {env_file}` to use the airflow CLI against this stack; logs in {settings.state_dir / 'logs'}",
        flush=True,
    )


def down(settings: Settings) -> None:
    """Stop the services of the topology in reverse start order, by their pid files."""
    for name in reversed(services(settings)):
        stopped = stop_process(settings, name)
        print(f"[stack] {name}: {'stopped' if stopped else 'not running'}", flush=True)


def _http_ok(url: str) -> None:
    with urllib.request.urlopen(url, timeout=5) as resp:
        resp.read()


def probe(settings: Settings, name: str) -> tuple[bool, str]:
    """Whether a service of the stack answers as it should, and what it said.

    postgres: a login; seaweedfs: S3's /status; mlflow: /health; airflow (standalone): the
    API server's /monitor/health with every component (metadatabase, scheduler,
    dag_processor, triggerer) healthy; airflow-<component>: that component in it; redis:
    PING; Celery workers: their pid only."""
    try:
        if name == "postgres":
            import psycopg2

            psycopg2.connect(settings.pg_url("postgres", "postgresql"), connect_timeout=3).close()
            return True, "accepts logins"
        if name == "seaweedfs":
            _http_ok(f"{settings.s3_endpoint}/status")
            return True, "S3 API answers"
        if name == "mlflow":
            _http_ok(f"{settings.mlflow_url}/health")
            return True, "/health answers"
        if name == "redis":
            import redis

            redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3).ping()
            return True, "PING answered"
        if name.startswith("worker-"):
            return True, "(pid only)"
        health = airflow_health(settings)
        parts = HEALTH_PARTS
        if name.startswith("airflow-") and name != "airflow-api-server":
            parts = (name.removeprefix("airflow-").replace("-", "_"),)
        states = {part: (health.get(part) or {}).get("status") for part in parts}
        bad = {part: state for part, state in states.items() if state != "healthy"}
        return not bad, ", ".join(f"{part} {state}" for part, state in states.items())
    except Exception as exc:  # any failure to answer is "down"; the message says which
        return False, f"no answer: {str(exc)[:160]}"


def status(settings: Settings) -> int:
    """Each service: its process and whether it answers (probe). Exit code 1 if any is down."""
    code = 0
    for name in services(settings):
        pid = service_pid(settings, name)
        alive = pid is not None
        healthy, detail = probe(settings, name) if alive else (False, "")
        code |= 0 if healthy else 1
        state = "running" if healthy else ("UNHEALTHY" if alive else "stopped")
        pid = f"(pid {pid})" if alive else ""
        print(f"{name:22s} {state:9s} {pid:12s} {detail}".rstrip())
    return code
