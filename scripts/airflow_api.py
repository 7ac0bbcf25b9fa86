"""A small client of Airflow 3's REST API (/api/v2), used by the demo driver and tests.

It logs in like any API client (POST /auth/token with the simple auth manager's user)
and then only uses public endpoints.

Idempotent calls (GET, PATCH, and a trigger with a run id the client chose, which a
repeat cannot duplicate) are retried on HTTP 5xx and connection errors with exponential
backoff; each retry is logged. A non-idempotent call is never repeated.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

TERMINAL_STATES = {"success", "failed"}
IDEMPOTENT_METHODS = {"GET", "PATCH", "PUT", "DELETE"}

log = logging.getLogger("airflow_api")
if not log.handlers:
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(logging.Formatter("[airflow_api %(asctime)s] %(message)s", "%H:%M:%S"))
    log.addHandler(_handler)
    log.setLevel(logging.INFO)
    log.propagate = False


class AirflowAPIError(RuntimeError):
    """An answer the client cannot use: a 4xx, or a 5xx/connection error that outlasted the retries."""


class TransientError(AirflowAPIError):
    """HTTP 5xx or a connection error: the same call may succeed later."""


class AirflowClient:
    """Airflow's REST API with a bearer token, retrying idempotent calls on transient errors.

    retries: attempts after the first; backoff: the first wait in seconds, doubled after
    each failed attempt and capped at max_backoff.
    """

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        retries: int = 8,
        backoff: float = 1.0,
        max_backoff: float = 15.0,
    ):
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.retried: list[str] = []  # one line per retried call, for tests and summaries
        self._token: str | None = None

    def _login(self) -> str:
        body = json.dumps({"username": self.username, "password": self.password}).encode()
        req = urllib.request.Request(
            f"{self.base_url}/auth/token", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        # Logging in creates nothing: as safe to repeat as a GET.
        payload = self._with_retries("POST /auth/token", lambda: self._send(req, "POST", "/auth/token"))
        return json.loads(payload)["access_token"]

    def _send(self, req: urllib.request.Request, method: str, path: str) -> bytes:
        """One HTTP exchange; 5xx and connection errors become TransientError."""
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            error_class = TransientError if exc.code >= 500 else AirflowAPIError
            error = error_class(f"{method} {path}: HTTP {exc.code}: {detail}")
            error.code = exc.code
            raise error from exc
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            raise TransientError(f"{method} {path}: {exc}") from exc

    def _with_retries(self, what: str, call):
        """call() until it succeeds, retrying TransientError with exponential backoff."""
        wait = self.backoff
        for attempt in range(self.retries + 1):
            try:
                return call()
            except TransientError as exc:
                if attempt == self.retries:
                    raise
                line = f"{what}: {exc}; retry {attempt + 1}/{self.retries} in {wait:.1f}s"
                self.retried.append(line)
                log.info(line)
                time.sleep(wait)
                wait = min(wait * 2, self.max_backoff)

    def request(self, method: str, path: str, body: Any = None, idempotent: bool | None = None) -> Any:
        """Call /api/v2<path>; JSON in and out. Retried on transient errors when idempotent
        (default: by method). Raises AirflowAPIError on a 4xx or when retries run out."""
        data = json.dumps(body).encode() if body is not None else None
        retry = method in IDEMPOTENT_METHODS if idempotent is None else idempotent

        def once() -> bytes:
            if self._token is None:
                self._token = self._login()
            try:
                return self._send(self._api_request(method, path, data), method, path)
            except AirflowAPIError as exc:
                if getattr(exc, "code", None) != 401:
                    raise
                self._token = None  # expired token: log in again, once
                return self._send_with_new_token(method, path, data)

        payload = self._with_retries(f"{method} {path}", once) if retry else once()
        return json.loads(payload) if payload else None

    def _send_with_new_token(self, method: str, path: str, data: bytes | None) -> bytes:
        self._token = self._login()
        return self._send(self._api_request(method, path, data), method, path)

    def _api_request(self, method: str, path: str, data: bytes | None) -> urllib.request.Request:
        """A request to /api/v2<path> with the current token."""
        return urllib.request.Request(
            f"{self.base_url}/api/v2{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
        )

    # -- endpoints used by the demo and tests
    def dags(self) -> list[dict]:
        return self.request("GET", "/dags?limit=100")["dags"]

    def import_errors(self) -> list[dict]:
        return self.request("GET", "/importErrors")["import_errors"]

    def dag(self, dag_id: str) -> dict:
        return self.request("GET", f"/dags/{dag_id}")

    def set_paused(self, dag_id: str, paused: bool) -> bool:
        """Pause or unpause; no call when the DAG already is. True if it changed."""
        if self.dag(dag_id)["is_paused"] == paused:
            return False
        self.request("PATCH", f"/dags/{dag_id}", {"is_paused": paused})
        return True

    def trigger(self, dag_id: str, conf: dict | None = None, run_id: str | None = None) -> str:
        """Trigger a run under a run id chosen here, so that a retry cannot start a second run:
        a repeat after a lost answer gets 409 (the run exists), which counts as success when the
        id is one this call made up (nobody else can have used it)."""
        chosen_here = run_id is None
        run_id = run_id or f"manual__{time.strftime('%Y%m%dT%H%M%S')}_{uuid.uuid4().hex[:8]}"
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf or {}}
        try:
            self.request("POST", f"/dags/{dag_id}/dagRuns", body, idempotent=True)
        except AirflowAPIError as exc:
            if getattr(exc, "code", None) != 409 or not chosen_here:
                raise
            log.info(f"trigger {dag_id} {run_id}: already created by an earlier attempt")
        return run_id

    def dag_runs(self, dag_id: str, limit: int = 100) -> list[dict]:
        return self.request("GET", f"/dags/{dag_id}/dagRuns?order_by=-run_after&limit={limit}")["dag_runs"]

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id, safe='')}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        path = f"/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id, safe='')}/taskInstances"
        return self.request("GET", path)["task_instances"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600, on_progress=None) -> dict:
        """Poll until the run ends; on_progress(run, task_instances) is called on each change."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                run = self.dag_run(dag_id, run_id)
                tis = self.task_instances(dag_id, run_id) if on_progress is not None else []
            except TransientError as exc:  # retries ran out: keep polling until the deadline
                log.info(f"polling {dag_id} {run_id}: {exc}; polling on")
                time.sleep(5)
                continue
            if on_progress is not None:
                snapshot = sorted((t["task_id"], t.get("map_index", -1), t["state"]) for t in tis)
                if snapshot != last:
                    on_progress(run, tis)
                    last = snapshot
            if run["state"] in TERMINAL_STATES:
                return run
            time.sleep(2)
        raise TimeoutError(f"{dag_id} run {run_id} did not finish within {timeout:.0f}s")

    def wait_for_dags(self, dag_ids: set[str], timeout: float = 180) -> list[dict]:
        """Wait until the DAG processor has parsed every expected DAG; fail on import errors."""
        deadline = time.monotonic() + timeout
        while True:
            errors = self.import_errors()
            if errors:
                details = "\n".join(f"{e['filename']}: {e['stack_trace'][-800:]}" for e in errors)
                raise AirflowAPIError(f"DAG import errors:\n{details}")
            dags = self.dags()
            if dag_ids <= {d["dag_id"] for d in dags}:
                return dags
            if time.monotonic() > deadline:
                missing = dag_ids - {d["dag_id"] for d in dags}
                raise TimeoutError(f"DAGs not parsed within {timeout:.0f}s: {sorted(missing)}")
            time.sleep(2)
