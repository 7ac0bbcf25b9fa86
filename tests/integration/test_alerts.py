"""Every DAG alerts: a task that fails for good posts to the configured channel (a real webhook).

All three services are pointed at closed loopback ports, so the first task of each DAG that
talks to one fails; with retries off (MLOPS__TASKS__RETRIES=0, read when the DAGs are parsed)
the failure is final and the DAG defaults' failure callback must fire.
"""

import json

import pytest
from helpers import task_states

# The warehouse is read and written through the same SQLAlchemy code on both dialects here:
# PostgreSQL, the default, is enough (the SQLite warehouse is covered where its dialect matters).
pytestmark = [pytest.mark.integration, pytest.mark.warehouses("postgres")]

CLOSED = "127.0.0.1"
# (dag_id, conf, a task that must fail and alert)
RUNS = [
    ("health_check", {}, "warehouse"),
    ("ingest", {"object_key": "landing/alert-probe.csv"}, "list_objects"),
    ("train", {}, "snapshot"),
    ("batch_score", {}, "plan"),
    ("drift_check", {}, "champion"),
    ("rollback_champion", {}, "rollback"),
]


@pytest.fixture()
def broken_services(monkeypatch, airflow_db):
    """The object store, MLflow and the warehouse connections all on a closed port."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_OBJECT_STORE",
        json.dumps(
            {"conn_type": "aws", "login": "k", "password": "s", "extra": {"endpoint_url": f"http://{CLOSED}:9"}}
        ),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW", json.dumps({"conn_type": "http", "host": CLOSED, "port": 9, "schema": "http"})
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE",
        json.dumps({"conn_type": "postgres", "host": CLOSED, "port": 9, "login": "u", "password": "p", "schema": "w"}),
    )
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")


@pytest.mark.parametrize(("dag_id", "conf", "task_id"), RUNS, ids=[r[0] for r in RUNS])
def test_a_failed_task_of_every_dag_alerts_with_dag_task_run_and_log_url(
    dag_id, conf, task_id, dags_without_retries, broken_services, webhook
):
    dag = dags_without_retries.dags[dag_id]
    assert dag.get_task(task_id).retries == 0
    dag_run = dag.test(run_conf=conf)
    states = task_states(dag_run)
    assert states[task_id] == "failed", states
    alerts = [a for a in webhook if f"{dag_id}.{task_id}" in a["subject"]]
    assert alerts, f"no alert for {dag_id}.{task_id}; received: {[a['subject'] for a in webhook]}"
    body = alerts[0]["body"]
    assert dag_run.run_id in body, body
    assert "log: http" in body, body
