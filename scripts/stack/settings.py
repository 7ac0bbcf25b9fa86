"""The stack's settings: state folder, ports, credentials, and the environment each service
gets from them (Airflow, MLflow server and client, the pipeline's connections).

Ports come from MLOPS_*_PORT, credentials from the environment or are generated once into
<state>/credentials.json. The celery topology has its own default ports and state folder.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path

from stack.connections import aws_connection, http_connection, pipeline_connections, postgres_connection

ROOT = Path(__file__).resolve().parents[2]
PRELOAD_DIR = Path(__file__).resolve().parent / "preload"
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
            return postgres_connection(HOST, self.pg_port, self.pg_user, self.pg_password, PG_DATABASES["warehouse"])
        if self.warehouse != "sqlite":
            raise ValueError(f"unknown warehouse {self.warehouse!r}: sqlite or postgres")
        self.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
        return {"conn_type": "sqlite", "host": str(self.warehouse_path)}

    def connection_env(self) -> dict[str, str]:
        """AIRFLOW_CONN_* variables: the pipeline's connections, defined from the environment."""
        conns = pipeline_connections(
            aws_connection(self.access_key, self.secret_key, self.s3_endpoint),
            http_connection(HOST, self.mlflow_port, "http", self.mlflow_user, self.mlflow_password),
            self.warehouse_connection(),
        )
        return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn) for conn_id, conn in conns.items()}

    @property
    def uses_postgres(self) -> bool:
        return "postgres" in (self.database, self.warehouse)

    @property
    def airflow_metadata_url(self) -> str:
        """Airflow's metadata DB: the `airflow` database of PostgreSQL, or a SQLite file in AIRFLOW_HOME."""
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
            # An idle scheduler loop sleeps this long (default 1 s) before it looks again for
            # finished tasks, asset events and runs to create: each hand-off of the chain from a
            # landing file to its predictions (~8 task hops) waited up to that long. 0.25 s costs
            # the idle scheduler a few % of a core (bench/loop.py, README "The embedded stack").
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": os.environ.get(
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME", "0.25"
            ),
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
            "PYTHONPATH": os.pathsep.join(str(p) for p in self.python_path()),
            # `airflow standalone` starts its components as `airflow ...` from PATH.
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            **self.connection_env(),
            **self.scoring_env(),
            **(self.celery_env() if self.topology == "celery" else {}),
            **self.extra_env,
        }

    def python_path(self) -> list[Path]:
        """The project's plugins; on standalone also stack/preload, whose airflow_local_settings
        makes the scheduler import the tasks' libraries once (LocalExecutor forks tasks from it)."""
        return [ROOT / "plugins"] + [PRELOAD_DIR] * (self.topology == "standalone")

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
        """MLflow's backend store: the `mlflow` database of PostgreSQL, or a SQLite file in the state folder."""
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
