"""Access to the three services, always through Airflow connections.

The connection ids come from the configuration (connections.*). In the embedded stack and
in tests the connections are defined by AIRFLOW_CONN_<ID> environment variables.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading

from mlops.config import get_config

# Within a shared_connections() block (one process_object() call) the S3 client and the
# warehouse engine are made once: building them (connection lookup, boto3 client, SQLAlchemy
# engine) costs more than a small file.
_SHARED: contextvars.ContextVar[dict | None] = contextvars.ContextVar("shared_connections", default=None)


@contextlib.contextmanager
def shared_connections():
    """A block in which shared(name, make) makes each client once; disposes the engine after."""
    token = _SHARED.set({})
    try:
        yield
    finally:
        cache = _SHARED.get() or {}
        if "engine" in cache:
            cache["engine"].dispose()
        _SHARED.reset(token)


def shared(name: str, make):
    """make() once per shared_connections() block (its result cached under `name`); outside
    a block, make() every call. Thread-safe: threads of the block (copies of its context) that
    ask for the same name at once wait for the one make(); other names are made meanwhile."""
    cache = _SHARED.get()
    if cache is None:
        return make()
    with _LOCKS_GUARD:
        lock = cache.setdefault(f"{name} lock", threading.Lock())
    with lock:
        if name not in cache:
            cache[name] = make()
    return cache[name]


_LOCKS_GUARD = threading.Lock()


def object_store_hook():
    """An S3Hook for the object store (SeaweedFS locally, MinIO or AWS S3 elsewhere)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=get_config().connections.object_store)


def s3_client():
    """A boto3 S3 client built from the object store connection."""
    return object_store_hook().get_conn()


def warehouse_hook():
    """The DB-API hook of the warehouse connection (SqliteHook, PostgresHook, ...)."""
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(get_config().connections.warehouse).get_hook()


def warehouse_engine():
    """A SQLAlchemy engine on the warehouse."""
    return warehouse_hook().get_sqlalchemy_engine()


def mlflow_tracking_uri() -> str:
    """http://host:port of the MLflow tracking server, from the mlflow connection."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(get_config().connections.mlflow)
    scheme = conn.schema or "http"
    port = f":{conn.port}" if conn.port else ""
    return f"{scheme}://{conn.host}{port}"


def configure_mlflow():
    """Point the mlflow client at the tracking server, with the connection's login for the
    server's basic auth (MLflow's client reads MLFLOW_TRACKING_USERNAME/PASSWORD), and return
    the module."""
    import os

    import mlflow
    from airflow.sdk import BaseHook

    # Progress bars go to stderr, which task logs show as ERROR lines.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    route_mlflow_output()
    conn = BaseHook.get_connection(get_config().connections.mlflow)
    if conn.login:
        os.environ["MLFLOW_TRACKING_USERNAME"] = conn.login
        os.environ["MLFLOW_TRACKING_PASSWORD"] = conn.password or ""
    mlflow.set_tracking_uri(mlflow_tracking_uri())
    return mlflow


def route_mlflow_output() -> None:
    """Keep MLflow off stderr, which an Airflow task log shows as ERROR lines.

    MLflow gives its loggers (mlflow, sqlalchemy.engine, alembic, huey) a handler writing to
    stderr, and prints messages such as "Successfully registered model" and "View run at"
    there (eprint). Its loggers propagate to the task's log handlers instead, at their own
    levels; its stream is switched off (what those messages say, the tasks log themselves);
    Python warnings go to the log as WARNING records (logging.captureWarnings)."""
    import logging

    from mlflow.utils import logging_utils

    for name in ("mlflow", "sqlalchemy.engine", "alembic", "huey"):
        logger = logging.getLogger(name)
        logger.handlers = [
            h for h in logger.handlers if getattr(h, "stream", None) is not logging_utils.MLFLOW_LOGGING_STREAM
        ]
        logger.propagate = True
    logging_utils.disable_logging()
    logging.captureWarnings(True)
