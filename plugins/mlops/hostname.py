"""The hostname Airflow records on each task instance ([core] hostname_callable).

Several Celery workers on one machine share its hostname; each worker started by
scripts/stack sets MLOPS_WORKER_NAME, so its task instances read `w1@host`, `w2@host`
and the UI (and the tests) can tell which worker ran what. Without the variable (one
worker per machine or container) this is the machine's fully qualified name.
"""

from __future__ import annotations

import os
import socket


def worker_hostname() -> str:
    name = os.environ.get("MLOPS_WORKER_NAME")
    host = socket.getfqdn()
    return f"{name}@{host}" if name else host
