"""A missed freshness deadline posts to the configured channel (a real webhook receiver)."""

from mlops.alerts import alert_on_missed_deadline

# What the scheduler hands a deadline callback (airflow.models.deadline.Deadline.handle_miss).
CONTEXT = {
    "dag_run": {
        "dag_id": "batch_score",
        "dag_run_id": "asset_triggered__2026-11-30T01:00:00+00:00",
        "state": "running",
        "queued_at": "2026-11-30T01:00:00Z",
        "logical_date": None,
    },
    "deadline": {"id": "0193", "deadline_time": "2026-11-30T02:00:00Z"},
}


def test_a_missed_deadline_names_the_dag_the_run_and_the_rule(webhook):
    alert_on_missed_deadline(context=CONTEXT, rule="a loaded batch is scored within 60 min")
    (message,) = webhook
    assert message["subject"] == "[mlops] batch_score missed its deadline"
    body = message["body"]
    assert "run: asset_triggered__2026-11-30T01:00:00+00:00" in body
    assert "rule: a loaded batch is scored within 60 min" in body
    assert "deadline: 2026-11-30T02:00:00Z" in body
    assert "/dags/batch_score/runs/asset_triggered__2026-11-30T01:00:00+00:00" in body


def test_an_empty_context_still_alerts(webhook):
    alert_on_missed_deadline(context=None, rule="drift checked daily")
    (message,) = webhook
    assert message["subject"] == "[mlops] ? missed its deadline" and "drift checked daily" in message["body"]
