"""The stack's one wait loop (stack.process.poll_until) and the connection definitions that the
embedded stack and the docker-compose init share (stack.connections)."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys

import pytest

from stack import ROOT, Settings, poll_until


def test_poll_until_returns_the_first_truthy_result_and_retries_the_listed_errors():
    calls = []

    def check():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("not yet")
        return {"answer": len(calls)}

    assert poll_until(check, 5, "service", interval=0.01, retry_on=(ConnectionError,)) == {"answer": 3}


def test_poll_until_names_what_and_the_last_error_on_timeout():
    def check():
        raise ConnectionError("connection refused")

    with pytest.raises(TimeoutError, match=r"service not ready within 0s \(last error: connection refused\)"):
        poll_until(check, 0.05, "service", interval=0.01, retry_on=(ConnectionError,))


def test_poll_until_lets_other_errors_through_at_once():
    def check():
        raise ValueError("bad answer")

    with pytest.raises(ValueError, match="bad answer"):
        poll_until(check, 5, "service", interval=0.01, retry_on=(ConnectionError,))


def test_poll_until_stops_when_the_process_exited_and_shows_its_log(tmp_path):
    log = tmp_path / "service.log"
    log.write_text("listen failed: address in use\n")
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    with pytest.raises(RuntimeError, match=r"(?s)service exited with code 3 while starting.*address in use"):
        poll_until(lambda: False, 30, "service", interval=0.01, proc=proc, log=log)


def test_compose_init_and_the_embedded_stack_define_the_same_connections(tmp_path):
    """Both build the pipeline's three connections with stack.connections: same ids, same types,
    same fields (values differ: the compose services' names against loopback ports)."""
    settings = Settings.from_env(tmp_path, environ={})
    embedded = {
        name.removeprefix("AIRFLOW_CONN_").lower(): json.loads(v) for name, v in settings.connection_env().items()
    }
    compose_env = {
        "MLOPS_MLFLOW_URL": "http://mlflow:5000",
        "MLOPS_S3_ENDPOINT": "http://seaweedfs:8333",
        "MLOPS_S3_ACCESS_KEY": "key",
        "MLOPS_S3_SECRET_KEY": "secret",
        "MLOPS_WAREHOUSE_HOST": "postgres",
        "MLOPS_WAREHOUSE_USER": "mlops",
        "MLOPS_WAREHOUSE_PASSWORD": "pw",
    }
    compose = runpy.run_path(str(ROOT / "scripts" / "compose_init.py"))["connections"](compose_env)
    assert set(compose) == set(embedded)
    for conn_id, conn in compose.items():
        assert conn["conn_type"] == embedded[conn_id]["conn_type"], conn_id
    assert compose[settings_id("object_store")]["extra"] == {
        "region_name": "us-east-1",
        "endpoint_url": "http://seaweedfs:8333",
    }
    assert compose[settings_id("mlflow")] == {"conn_type": "http", "host": "mlflow", "port": 5000, "schema": "http"}
    assert embedded[settings_id("mlflow")]["login"] == settings.mlflow_user


def settings_id(name: str) -> str:
    from mlops.config import get_config

    return getattr(get_config().connections, name)
