"""Airflow's local settings for the embedded stack: the scheduler imports the task libraries once.

Airflow imports `airflow_local_settings` in every one of its processes. The embedded stack puts
this folder on PYTHONPATH (stack.settings.Settings.airflow_env), and in the *scheduler* only
this module imports the heavy libraries the pipeline's tasks import lazily: Great Expectations
(~7 s on the shared 2-core machine), MLflow with scikit-learn (~2.5 s), pandas, pyarrow, boto3.
standalone's LocalExecutor forks its worker processes from the scheduler and each task process
from a worker, so every task starts with them already imported (copy-on-write pages) instead of
paying the imports again: measured with bench/loop.py (see README, "The embedded stack").

Only third-party libraries: nothing here imports Airflow or the project (this module runs while
`import airflow` initialises). A library that fails to import is skipped with a log line: the
task imports it itself and reports its own error. MLOPS_PRELOAD_TASK_IMPORTS=0 switches it off.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time

# What the hot path imports: ingest_files (GX, pandas, pyarrow), the sensor and list_objects
# (boto3), batch_score (MLflow's sklearn flavour, sklearn, pyarrow), the warehouse (SQLAlchemy, psycopg2).
TASK_LIBRARIES = (
    "numpy",
    "pandas",
    "pyarrow.parquet",
    "sqlalchemy",
    "psycopg2",
    "boto3",
    "sklearn.pipeline",
    "mlflow",
    "mlflow.sklearn",
    "great_expectations",
)

log = logging.getLogger(__name__)
# Airflow copies every public name of its local settings into airflow.settings: export none.
__all__: list[str] = []


def is_task_forking_scheduler(argv: list[str], environ) -> bool:
    """True in `airflow scheduler` (LocalExecutor: task processes fork from it), unless switched off."""
    return argv[1:2] == ["scheduler"] and environ.get("MLOPS_PRELOAD_TASK_IMPORTS", "1") != "0"


def preload(modules=TASK_LIBRARIES) -> tuple[list[str], float]:
    """Import each module (failures are logged and skipped): (those imported, seconds)."""
    started, done = time.monotonic(), []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - never stop the scheduler; the task reports its own error
            log.warning("preload of %s skipped: %s", name, exc)
        else:
            done.append(name)
    return done, time.monotonic() - started


if is_task_forking_scheduler(sys.argv, os.environ):
    _done, _seconds = preload()
    print(f"[mlops] scheduler preloaded task libraries in {_seconds:.1f} s: {', '.join(_done)}", file=sys.stderr)
