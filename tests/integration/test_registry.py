"""One registry policy for every caller, against a real MLflow server and injected faults.

"No champion" may only come from a working server saying so (a missing alias, a model that
does not exist yet). A refused connection, a 404 of a wrong path, a 5xx, an error whose text
says "not found", a stopped server: each must fail promote, rollback, batch_score's
resolve_models and drift_check's resolve_champion (after retries), never read as "none".
"""

from __future__ import annotations

import http.server
import json
import threading
import uuid

import pytest
from airflow.sdk.exceptions import AirflowFailException
from helpers import set_config

import stack as stack_module
from mlops.config import get_config
from mlops.io import registry
from mlops.io.registry import RegistryUnavailable
from mlops.monitoring import check as monitoring
from mlops.scoring import batch as scoring
from mlops.training import promotion

# The warehouse is read and written through the same SQLAlchemy code on both dialects here:
# PostgreSQL, the default, is enough (the SQLite warehouse is covered where its dialect matters).
pytestmark = [pytest.mark.integration, pytest.mark.warehouses("postgres")]

MLFLOW_CONN_ENV = f"AIRFLOW_CONN_{get_config().connections.mlflow.upper()}"
TRIGGER = {"dag_id": "train", "run_id": "registry-test", "triggered_by": "test", "reason": "registry test"}


@pytest.fixture()
def model_name(stack, monkeypatch):
    """A fresh model name, the shipped config naming it; registry retries kept short."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    monkeypatch.setattr(registry, "ATTEMPTS", 2)
    monkeypatch.setattr(registry, "MAX_WAIT_SECONDS", 0)
    name = f"registry_{uuid.uuid4().hex[:6]}"
    set_config(monkeypatch, MLOPS__MODEL__REGISTERED_NAME=name)
    return name


def _register_version(name: str, alias: str | None) -> str:
    client = registry.client()
    client.create_registered_model(name)
    run = client.create_run(client.get_experiment_by_name("Default").experiment_id)
    version = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return str(version.version)


def _callers_say_none() -> None:
    assert registry.alias_version(get_config().model.registered_name, registry.CHAMPION) is None
    assert scoring.resolve_models() is None
    assert monitoring.resolve_champion(get_config()) is None
    with pytest.raises(AirflowFailException, match="has no champion"):
        promotion.rollback(None, TRIGGER)


def test_a_model_that_does_not_exist_yet_has_no_champion(model_name):
    _callers_say_none()


def test_a_missing_alias_on_an_existing_model_is_no_champion(model_name):
    version = _register_version(model_name, registry.CHALLENGER)
    _callers_say_none()
    assert registry.aliases(model_name) == {"challenger": version}


def test_an_existing_champion_is_found_by_every_caller(model_name):
    version = _register_version(model_name, registry.CHAMPION)
    assert scoring.resolve_models()["champion"] == version
    assert monitoring.resolve_champion(get_config())["version"] == version


class _Fault(http.server.BaseHTTPRequestHandler):
    """A real HTTP server in front of nothing: every request gets the configured error."""

    status, body = 503, "Service Unavailable"

    def _answer(self):
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json" if self.body.startswith("{") else "text/plain")
        self.end_headers()
        self.wfile.write(self.body.encode())

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture()
def fault_server():
    servers = []

    def start(status: int, body: str) -> int:
        handler = type("Handler", (_Fault,), {"status": status, "body": body})
        server = http.server.ThreadingHTTPServer((stack_module.HOST, 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()


def _point_mlflow_at(monkeypatch, host: str, port: int | None) -> None:
    monkeypatch.setenv(MLFLOW_CONN_ENV, json.dumps({"conn_type": "http", "host": host, "port": port, "schema": "http"}))


def _every_caller_fails(name: str, caplog) -> None:
    registered = {"model_name": name, "version": "2"}
    calls = {
        "promote": lambda: promotion.promote({}, {}, registered, {"force_promote": False}, TRIGGER),
        "rollback": lambda: promotion.rollback(None, TRIGGER),
        "batch_score": scoring.resolve_models,
        "drift_check": lambda: monitoring.resolve_champion(get_config()),
    }
    for caller, call in calls.items():
        caplog.clear()
        with pytest.raises(RegistryUnavailable, match="failed 2 times"):
            call()
        assert "try 1 of 2" in caplog.text, caller  # retried before failing


@pytest.mark.parametrize(
    "kind",
    ["connection_refused", "wrong_path_404", "http_503", "not_found_text_in_500", "does_not_exist_from_a_proxy"],
)
def test_registry_errors_fail_every_caller_never_no_champion(
    model_name, stack, monkeypatch, fault_server, caplog, kind
):
    _register_version(model_name, registry.CHAMPION)
    if kind == "connection_refused":
        _point_mlflow_at(monkeypatch, stack_module.HOST, stack_module.free_port())
    elif kind == "wrong_path_404":  # the real MLflow server, under a path it does not serve
        _point_mlflow_at(monkeypatch, f"{stack_module.HOST}:{stack.mlflow_port}/no/such/prefix", None)
    elif kind == "http_503":
        _point_mlflow_at(monkeypatch, stack_module.HOST, fault_server(503, "Service Unavailable"))
    elif kind == "not_found_text_in_500":
        body = json.dumps({"error_code": "INTERNAL_ERROR", "message": f"alias champion of {model_name} not found"})
        _point_mlflow_at(monkeypatch, stack_module.HOST, fault_server(500, body))
    else:  # the model-missing answer itself, but the confirming search fails too: not trusted
        body = json.dumps(
            {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Registered Model with name={model_name} not found"}
        )
        _point_mlflow_at(monkeypatch, stack_module.HOST, fault_server(404, body))
    _every_caller_fails(model_name, caplog)


def test_a_stopped_server_fails_every_caller_and_a_restarted_one_answers(model_name, stack, caplog):
    version = _register_version(model_name, registry.CHAMPION)
    stack_module.stop_process(stack, "mlflow")
    try:
        _every_caller_fails(model_name, caplog)
    finally:
        stack_module.start_mlflow(stack)
    assert registry.champion_version(model_name) == version
