"""Health checks of the three services, used by the health_check DAG.

Each check does a real round trip (write, read, delete; a query) and returns a small
JSON-able summary, or raises with a message naming the service and what failed.
"""

from __future__ import annotations

import time
import uuid

from mlops.config import get_config
from mlops.io.connections import configure_mlflow, object_store_hook


def check_object_store() -> dict:
    """Write, read back and delete a probe object in the pipeline's bucket."""
    storage = get_config().storage
    hook = object_store_hook()
    t0 = time.monotonic()
    if not hook.check_for_bucket(storage.bucket):
        raise RuntimeError(f"object store: bucket {storage.bucket!r} does not exist")
    key = f"_health/{uuid.uuid4().hex}.txt"
    payload = f"health check {key}"
    hook.load_string(payload, key=key, bucket_name=storage.bucket)
    try:
        echoed = hook.read_key(key, bucket_name=storage.bucket)
    finally:
        hook.delete_objects(storage.bucket, [key])
    if echoed != payload:
        raise RuntimeError(f"object store: read back {echoed!r}, wrote {payload!r}")
    return {"service": "object_store", "bucket": storage.bucket, "seconds": round(time.monotonic() - t0, 3)}


def check_mlflow() -> dict:
    """Ask the tracking server for its experiments."""
    mlflow = configure_mlflow()
    t0 = time.monotonic()
    experiments = mlflow.MlflowClient().search_experiments(max_results=5)
    return {
        "service": "mlflow",
        "tracking_uri": mlflow.get_tracking_uri(),
        "experiments": len(experiments),
        "seconds": round(time.monotonic() - t0, 3),
    }


# How long the warehouse probe waits for a lock before it reports the warehouse unhealthy.
WAREHOUSE_LOCK_TIMEOUT_SECONDS = 5


def check_warehouse() -> dict:
    """Write a probe row into the pipeline's `batches` table, read it back and the latest rows
    of `observations` and `predictions`, then roll back: the check fails when ingest or
    scoring could not write either (a lock held past WAREHOUSE_LOCK_TIMEOUT_SECONDS, a
    missing table, a read-only database). Leaves nothing behind."""
    import sqlalchemy as sa

    from mlops.io import warehouse

    t0 = time.monotonic()
    warehouse.ensure_schema()
    probe_id = f"_health_{uuid.uuid4().hex}"
    now = time.strftime(warehouse.TIMESTAMP_FORMAT, time.gmtime())
    engine = warehouse.engine()
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text(f"SET LOCAL lock_timeout = '{WAREHOUSE_LOCK_TIMEOUT_SECONDS}s'"))
            conn.execute(
                sa.text(
                    "INSERT INTO batches (batch_id, object_key, checksum, status, reason, loaded_at) "
                    "VALUES (:id, '_health', '', 'health_probe', 'health_check probe, rolled back', :now)"
                ),
                {"id": probe_id, "now": now},
            )
            echoed = conn.execute(sa.text("SELECT status FROM batches WHERE batch_id = :id"), {"id": probe_id}).scalar()
            for table in ("observations", "predictions"):
                conn.execute(sa.text(f"SELECT batch_id FROM {table} ORDER BY batch_id DESC LIMIT 1")).all()
        except sa.exc.OperationalError as exc:
            raise RuntimeError(f"warehouse: the pipeline's tables cannot be written: {exc.orig}") from exc
        finally:
            transaction.rollback()
    if echoed != "health_probe":
        raise RuntimeError(f"warehouse: probe row of batches read back as {echoed!r}")
    return {"service": "warehouse", "dialect": engine.dialect.name, "seconds": round(time.monotonic() - t0, 3)}
