"""The stack's services other than Airflow and PostgreSQL: SeaweedFS (the S3 object store),
the MLflow tracking server and Redis (the celery topology's broker), and `probe`, whether a
service of the stack answers as it should."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path

from mlops.config import load_config
from stack.process import _log_file, _spawn, poll_until, wait_http
from stack.settings import BIN, HOST, SYSTEM_PACKAGES, Settings


def start_object_store(settings: Settings) -> subprocess.Popen:
    """SeaweedFS in `weed mini` mode with one identity; anonymous requests are refused."""
    cfg = load_config().storage
    data_dir = settings.state_dir / "seaweedfs"
    data_dir.mkdir(parents=True, exist_ok=True)
    s3_config = settings.state_dir / "seaweedfs-s3.json"
    s3_config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "pipeline",
                        "credentials": [{"accessKey": settings.access_key, "secretKey": settings.secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    s3_config.chmod(0o600)
    base = settings.weed_base_port
    argv = [
        str(BIN / "weed"),
        f"-config_dir={_write_weed_security(settings)}",
        "mini",
        f"-dir={data_dir}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        f"-master.port={base}",
        f"-master.port.grpc={base + 1}",
        f"-volume.port={base + 2}",
        f"-volume.port.grpc={base + 3}",
        f"-filer.port={base + 4}",
        f"-filer.port.grpc={base + 5}",
        f"-s3.port={settings.s3_port}",
        f"-s3.port.grpc={base + 7}",
        f"-s3.port.iceberg={base + 8}",
        f"-s3.port.lance={base + 9}",
        f"-admin.port={base + 10}",
        f"-metricsPort={base + 11}",
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=256",
        f"-s3.config={s3_config}",
        f"-bucket={cfg.bucket},{cfg.mlflow_bucket}",
    ]
    proc = _spawn(settings, "seaweedfs", argv, {})
    wait_http(f"{settings.s3_endpoint}/status", proc, 90, "SeaweedFS", _log_file(settings, "seaweedfs"))
    _wait_buckets(settings, [cfg.bucket, cfg.mlflow_bucket], proc)
    return proc


def _write_weed_security(settings: Settings) -> Path:
    """security.toml with JWT keys for SeaweedFS's filer and volume servers: only the S3
    gateway (same process, same keys) reads or writes them; anonymous HTTP gets 401. New keys
    at each start: nothing outside the process holds them."""
    conf_dir = settings.state_dir / "seaweedfs-conf"
    conf_dir.mkdir(parents=True, exist_ok=True)
    sections = ("jwt.signing", "jwt.signing.read", "jwt.filer_signing", "jwt.filer_signing.read")
    text = "".join(f'[{name}]\nkey = "{secrets.token_urlsafe(32)}"\nexpires_after_seconds = 60\n' for name in sections)
    path = conf_dir / "security.toml"
    path.write_text(text)
    path.chmod(0o600)
    return conf_dir


def _wait_buckets(settings: Settings, buckets: list[str], proc: subprocess.Popen) -> None:
    """Create the buckets that do not exist yet, as soon as the S3 gateway takes requests."""
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        aws_access_key_id=settings.access_key,
        aws_secret_access_key=settings.secret_key,
        region_name="us-east-1",
    )
    poll_until(
        lambda: ensure_buckets(s3, buckets) is not None, 60, "SeaweedFS buckets", proc=proc, retry_on=(Exception,)
    )


def ensure_buckets(s3, buckets: list[str]) -> list[str]:
    """Create each of `buckets` missing in the object store of boto3 client `s3`; returns those
    created (an empty list when all existed). Errors of the S3 API propagate."""
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    created = [bucket for bucket in buckets if bucket not in existing]
    for bucket in created:
        s3.create_bucket(Bucket=bucket)
    return created


def start_mlflow(settings: Settings) -> subprocess.Popen:
    """MLflow tracking server: backend store in PostgreSQL (or SQLite), artifacts in the object store (proxied)."""
    mlflow_dir = settings.state_dir / "mlflow"
    mlflow_dir.mkdir(parents=True, exist_ok=True)
    bucket = load_config().storage.mlflow_bucket
    _write_mlflow_auth_config(settings, mlflow_dir)
    argv = [
        str(BIN / "mlflow"),
        "server",
        "--app-name",
        "basic-auth",
        "--backend-store-uri",
        settings.mlflow_backend_store,
        "--artifacts-destination",
        f"s3://{bucket}/artifacts",
        "--host",
        HOST,
        "--port",
        str(settings.mlflow_port),
        "--workers",
        "1",
    ]
    proc = _spawn(settings, "mlflow", argv, settings.mlflow_server_env())
    wait_http(f"{settings.mlflow_url}/health", proc, 180, "MLflow server", _log_file(settings, "mlflow"))
    return proc


def _write_mlflow_auth_config(settings: Settings, mlflow_dir: Path) -> None:
    """MLflow's basic-auth app: every request needs a login (no permission by default), so
    nobody who merely reaches the port can read runs or move the champion alias."""
    config = (
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = sqlite:///{mlflow_dir / 'basic_auth.db'}\n"
        f"admin_username = {settings.mlflow_user}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = false\n"
        # PBKDF2 per request is costly on 2 cores; one user, whose password changes only here.
        "auth_cache_ttl_seconds = 60\n"
    )
    path = Path(settings.mlflow_server_env()["MLFLOW_AUTH_CONFIG_PATH"])
    path.write_text(config)
    path.chmod(0o600)


def _find_program(name: str) -> str | None:
    """A program from PATH."""
    return shutil.which(name)


def ensure_system_packages(packages: list[str] | None = None) -> None:
    """Install Redis from Debian's packages when it is missing (needs root)."""
    wanted = packages or list(SYSTEM_PACKAGES)
    missing = [pkg for pkg in wanted if _find_program(SYSTEM_PACKAGES[pkg]) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(f"missing {', '.join(missing)}: install them (Debian: apt-get install {' '.join(missing)})")
    print(f"[stack] installing {' '.join(missing)} with apt-get ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True, env=env)


def start_redis(settings: Settings) -> subprocess.Popen:
    """Redis on loopback with a password, in memory only: the broker holds only queued messages."""
    redis_dir = settings.state_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    conf = redis_dir / "redis.conf"
    conf.write_text(
        f"bind {HOST}\nport {settings.redis_port}\nprotected-mode yes\n"
        f'requirepass {settings.redis_password}\ndir {redis_dir}\nsave ""\nappendonly no\n'
    )
    conf.chmod(0o600)
    proc = _spawn(settings, "redis", [_find_program("redis-server"), str(conf)], {})
    import redis

    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2)
    log = _log_file(settings, "redis")
    poll_until(client.ping, 30, "Redis", interval=0.2, proc=proc, log=log, retry_on=(redis.exceptions.ConnectionError,))
    return proc
