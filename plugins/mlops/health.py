"""Health checks of the three services, used by the health_check DAG.

Each check does a real round trip (write, read, delete; a query) and returns a small
JSON-able summary, or raises with a message naming the service and what failed.
"""

from __future__ import annotations

import time
import uuid

from mlops.config import get_config
from mlops.connections import configure_mlflow, object_store_hook, warehouse_hook


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


def check_warehouse() -> dict:
    """Run a query on the warehouse connection."""
    t0 = time.monotonic()
    value = warehouse_hook().get_first("SELECT 1")[0]
    if value != 1:
        raise RuntimeError(f"warehouse: SELECT 1 returned {value!r}")
    return {"service": "warehouse", "seconds": round(time.monotonic() - t0, 3)}
