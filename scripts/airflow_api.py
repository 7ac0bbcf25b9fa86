"""A small client of Airflow 3's REST API (/api/v2), used by the demo driver and tests.

It logs in like any API client (POST /auth/token with the simple auth manager's user)
and then only uses public endpoints.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

TERMINAL_STATES = {"success", "failed"}


class AirflowAPIError(RuntimeError):
    pass


class AirflowClient:
    def __init__(self, base_url: str, username: str, password: str):
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self._token: str | None = None

    def _login(self) -> str:
        body = json.dumps({"username": self.username, "password": self.password}).encode()
        req = urllib.request.Request(
            f"{self.base_url}/auth/token", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)["access_token"]

    def request(self, method: str, path: str, body: Any = None, _retry: bool = True) -> Any:
        if self._token is None:
            self._token = self._login()
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"{self.base_url}/api/v2{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 401 and _retry:
                self._token = None
                return self.request(method, path, body, _retry=False)
            raise AirflowAPIError(f"{method} {path}: HTTP {exc.code}: {exc.read().decode(errors='replace')}") from exc
        return json.loads(payload) if payload else None

    # -- endpoints used by the demo and tests
    def dags(self) -> list[dict]:
        return self.request("GET", "/dags?limit=100")["dags"]

    def import_errors(self) -> list[dict]:
        return self.request("GET", "/importErrors")["import_errors"]

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.request("PATCH", f"/dags/{dag_id}", {"is_paused": paused})

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        run = self.request("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

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
            run = self.dag_run(dag_id, run_id)
            if on_progress is not None:
                tis = self.task_instances(dag_id, run_id)
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
