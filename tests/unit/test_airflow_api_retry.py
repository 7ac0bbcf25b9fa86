"""The demo's REST client against a real local HTTP server that fails a given number of times.

The server speaks the few endpoints the client uses (token, GET/PATCH a DAG, POST a run)
and answers the first N calls of a route with HTTP 500 or by dropping the connection.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from airflow_api import AirflowAPIError, AirflowClient


class FlakyAirflow(ThreadingHTTPServer):
    """Fails the first `failures[route]` calls of a route ("GET /api/v2/dags/x"), then answers."""

    def __init__(self, failures: dict[str, int], mode: str = "500"):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.failures = dict(failures)
        self.mode = mode
        self.calls: list[str] = []
        self.paused = {"ingest": False, "train": True}
        self.runs: dict[str, dict] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FlakyAirflow

    def log_message(self, *args):  # keep test output quiet
        pass

    def _answer(self, code: int, body: dict | None = None) -> None:
        data = json.dumps(body or {}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        route = f"{method} {self.path}"
        self.server.calls.append(route)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        if self.server.failures.get(route, 0) > 0:
            self.server.failures[route] -= 1
            if self.server.mode == "drop":
                self.close_connection = True
                self.connection.close()
                return
            return self._answer(500, {"detail": "Database error"})
        if route == "POST /auth/token":
            return self._answer(201, {"access_token": "t"})
        dag_id = self.path.split("/")[4]
        if method == "GET" and self.path.startswith("/api/v2/dags/"):
            return self._answer(200, {"dag_id": dag_id, "is_paused": self.server.paused[dag_id]})
        if method == "PATCH":
            self.server.paused[dag_id] = body["is_paused"]
            return self._answer(200, {"dag_id": dag_id, "is_paused": body["is_paused"]})
        if method == "POST" and self.path.endswith("/dagRuns"):
            if body["dag_run_id"] in self.server.runs:
                return self._answer(409, {"detail": "run exists"})
            self.server.runs[body["dag_run_id"]] = body
            # The run is created, but the answer is lost: a retry must not make a second one.
            if self.server.failures.pop("lose answer", 0):
                self.close_connection = True
                self.connection.close()
                return
            return self._answer(200, {"dag_run_id": body["dag_run_id"]})
        self._answer(404, {"detail": "no such route"})

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PATCH(self):
        self._handle("PATCH")


@pytest.fixture()
def flaky(request):
    failures, mode = request.param
    server = FlakyAirflow(failures, mode)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _client(server: FlakyAirflow, retries: int = 4) -> AirflowClient:
    return AirflowClient(server.url, "admin", "pw", retries=retries, backoff=0.01, max_backoff=0.05)


@pytest.mark.parametrize(
    "flaky", [({"GET /api/v2/dags/train": 3, "PATCH /api/v2/dags/train": 2}, m) for m in ("500", "drop")], indirect=True
)
def test_get_and_patch_are_retried_on_5xx_and_dropped_connections(flaky):
    client = _client(flaky)
    assert client.set_paused("train", False) is True
    assert flaky.paused["train"] is False
    assert len(client.retried) == 5
    assert all("retry" in line for line in client.retried)


@pytest.mark.parametrize("flaky", [({"POST /auth/token": 2}, "500")], indirect=True)
def test_login_is_retried(flaky):
    assert _client(flaky).dag("ingest")["is_paused"] is False


@pytest.mark.parametrize("flaky", [({}, "500")], indirect=True)
def test_unpausing_an_unpaused_dag_makes_no_patch(flaky):
    assert _client(flaky).set_paused("ingest", False) is False
    assert not any(call.startswith("PATCH") for call in flaky.calls)


@pytest.mark.parametrize("flaky", [({"lose answer": 1}, "500")], indirect=True)
def test_trigger_retried_after_a_lost_answer_makes_one_run(flaky):
    client = _client(flaky)
    run_id = client.trigger("train", {"reason": "test"})
    assert list(flaky.runs) == [run_id]
    assert len(client.retried) == 1


@pytest.mark.parametrize("flaky", [({"GET /api/v2/dags/train": 10}, "500")], indirect=True)
def test_retries_run_out_with_a_clear_error(flaky):
    with pytest.raises(AirflowAPIError, match="HTTP 500"):
        _client(flaky, retries=2).dag("train")
    assert flaky.calls.count("GET /api/v2/dags/train") == 3
