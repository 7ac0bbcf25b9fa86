"""The embedded stack as a user runs it: `stack.py up`, the REST API, the health check, `stack.py down`.

Runs the real `airflow standalone`, MLflow server and SeaweedFS on free loopback ports in a
temporary state folder, drives them like the demo does, and checks that `down` leaves no
process of the stack behind.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import stack as stack_module
from airflow_api import AirflowClient
from stack import free_port as _free_port
from stack import free_weed_base as _free_weed_base

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_stack_up_serves_ui_and_api_then_down_stops_everything(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLOPS"))},
        "MLOPS_STATE_DIR": str(tmp_path / "state"),
        "MLOPS_AIRFLOW_PORT": str(_free_port()),
        "MLOPS_MLFLOW_PORT": str(_free_port()),
        "MLOPS_S3_PORT": str(_free_port()),
        "MLOPS_WEED_BASE_PORT": str(_free_weed_base()),
    }
    script = str(ROOT / "scripts" / "stack.py")
    groups = {}
    try:
        up = subprocess.run([sys.executable, script, "up"], env=env, capture_output=True, text=True, timeout=600)
        assert up.returncode == 0, up.stdout + up.stderr
        settings = stack_module.Settings.from_env(environ=env)
        client = AirflowClient(settings.airflow_url, settings.airflow_user, settings.airflow_password)
        dags = client.wait_for_dags({"health_check"})
        assert client.import_errors() == []
        assert {d["dag_id"] for d in dags} >= {"health_check"}
        run_id = client.trigger("health_check")
        assert client.wait_for_run("health_check", run_id, timeout=300)["state"] == "success"
        groups = {
            name: int((settings.state_dir / "pids" / f"{name}.pid").read_text()) for name in stack_module.SERVICES
        }
        assert all(stack_module.group_members(pgid) for pgid in groups.values())
    finally:
        down = subprocess.run([sys.executable, script, "down"], env=env, capture_output=True, text=True, timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    leftovers = {name: stack_module.group_members(pgid) for name, pgid in groups.items()}
    for pids in leftovers.values():
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
    assert leftovers == dict.fromkeys(groups, [])
