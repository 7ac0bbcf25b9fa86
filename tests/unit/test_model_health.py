"""The Model health view's logic on a SQLite warehouse of its own: queries, page, report keys.

The services the view also reads (MLflow, the object store) are not started here: their
sections show the error, which is what the page must do when a service is down. The real
services, Airflow's login and the report streaming are tested in
tests/integration/test_health_view.py.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from example_warehouse import WAREHOUSE_CONN_ENV
from mlops.config import PROJECT_ROOT as CONFIG_ROOT
from mlops.config import get_config
from mlops.health import model as model_health
from mlops.health import page as model_health_page
from mlops.io import warehouse
from stack import free_port

CONFIG = get_config()
BUCKET = CONFIG.storage.bucket
NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


@pytest.fixture()
def filled_warehouse(tmp_path, monkeypatch):
    """A SQLite warehouse with a loaded and a quarantined batch, predictions, two drift runs and decisions."""
    monkeypatch.setenv(WAREHOUSE_CONN_ENV, json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "wh.db")}))
    warehouse.ensure_schema()
    engine = warehouse.engine()
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO batches (batch_id, object_key, checksum, rows_in, rows_kept, rows_dropped, status, reason, report_uri, loaded_at) "
                "VALUES (:id, :key, 'x', 10, :kept, 0, :status, :reason, :uri, :at)"
            ),
            [
                {
                    "id": "b1",
                    "key": "landing/2016-01.csv",
                    "kept": 10,
                    "status": "loaded",
                    "reason": None,
                    "uri": f"s3://{BUCKET}/reports/b1/report.html",
                    "at": "2026-11-29 11:00:00",
                },
                {
                    "id": "b2",
                    "key": "landing/<script>bad.csv",
                    "kept": 0,
                    "status": "quarantined",
                    "reason": "column 'Humidity' missing <b>",
                    "uri": f"s3://{BUCKET}/quarantine/b2/report.html",
                    "at": "2026-11-29 11:30:00",
                },
            ],
        )
        conn.execute(
            sa.text(
                'INSERT INTO predictions (batch_id, "Timestamp", model_name, model_version, role, probability, '
                "predicted_label, threshold, scored_at) VALUES ('b1', '2016-01-01 00:00:00', 'm', '1', 'champion', 0.3, 0, 0.5, '2026-11-29 11:45:00')"
            )
        )
        for i, (end, drifted) in enumerate(
            [("2016-01-31 00:00:00", []), ("2016-02-29 00:00:00", ["Humidity", "Temperature_C"])]
        ):
            conn.execute(
                sa.text(
                    "INSERT INTO drift_runs (drift_run_id, airflow_run_id, model_name, model_version, window_start, window_end, "
                    "n_reference, n_current, n_drifted, drifted_share, drifted_features, n_labeled, realized_accuracy, realized_f1, "
                    "realized_brier, holdout_accuracy, holdout_f1, holdout_brier, rule_fired, reason, report_uri, created_at) VALUES "
                    "(:id, :id, 'm', '1', '2016-01-01 00:00:00', :end, 100, 50, :n, :share, :features, 40, 0.8, 0.6, 0.1, 0.85, 0.7, 0.09, :fired, 'r', :uri, :created)"
                ),
                {
                    "id": f"run{i}",
                    "end": end,
                    "n": len(drifted),
                    "share": len(drifted) / 7,
                    "features": json.dumps(drifted),
                    "fired": int(bool(drifted)),
                    "uri": f"s3://{BUCKET}/reports/drift/run{i}/report.html",
                    "created": f"2026-11-2{8 + i} 10:00:00",
                },
            )
        conn.execute(
            sa.text(
                "INSERT INTO model_decisions (decision_id, decided_at, model_name, action, outcome, candidate_version, champion_before, "
                "champion_after, forced, metric, candidate_score, champion_score, difference, ci_low, ci_high, reason, triggered_by, dag_id, run_id, details) "
                "VALUES ('d1', '2026-11-27 09:00:00', 'm', 'promote', 'rejected', '2', '1', '1', 0, 'roc_auc', 0.81, 0.82, -0.01, -0.03, 0.01, "
                "'the CI does not lie above 0', 'drift_check', 'train', 'drift__run1', '{}')"
            )
        )
    yield engine
    engine.dispose()


def test_queries_return_the_rows_newest_first(filled_warehouse):
    with filled_warehouse.connect() as conn:
        batches = model_health.batches(conn)
        runs = model_health.drift_runs(conn)
        decisions = model_health.decisions(conn)
        counts = model_health.batch_counts(conn)
    assert [b["batch_id"] for b in batches] == ["b2", "b1"]
    assert batches[0]["reports"] == ["quarantine/b2/report.html", "quarantine/b2/validation.json"]
    assert runs[0]["drifted_features"] == ["Humidity", "Temperature_C"]
    assert runs[0]["reports"] == ["reports/drift/run1/report.html", "reports/drift/run1/result.json"]
    assert decisions[0]["outcome"] == "rejected" and decisions[0]["ci_low"] == pytest.approx(-0.03)
    assert counts == {"loaded": 1, "quarantined": 1}


def test_freshness_ages_from_the_warehouse_and_landing(filled_warehouse):
    landing = {"waiting": 1, "truncated": False, "newest": dt.datetime(2026, 11, 29, 11, 50, tzinfo=dt.UTC)}
    with filled_warehouse.connect() as conn:
        rows = {r["what"]: r for r in model_health.freshness(conn, NOW, landing)}
    assert rows["Last file landed"]["when"] == "2026-11-29 11:50:00" and rows["Last file landed"]["age"] == "10 min"
    assert rows["Last batch loaded"]["age"] == "1 h 0 min"
    assert rows["Last predictions written"]["age"] == "15 min"
    assert rows["Last drift check"]["age"] == "2 h 0 min"
    assert rows["Last model decision"]["age"] == "2 d 3 h"
    assert rows["Latest observation (data time)"]["when"] is None


def test_page_escapes_values_links_reports_and_shows_a_down_service(filled_warehouse, monkeypatch):
    # MLflow is down: a port nothing listens on (a session-scoped stack may be up on the usual one).
    mlflow_conn = f"AIRFLOW_CONN_{CONFIG.connections.mlflow.upper()}"
    monkeypatch.setenv(mlflow_conn, json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": free_port()}))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    data = model_health.gather(now=NOW)
    assert "models" in data["errors"]  # its section says why, the rest renders
    page = model_health_page.render(data, "/model-health")
    assert "<script>bad.csv" not in page and "&lt;script&gt;bad.csv" in page
    assert "column &#x27;Humidity&#x27; missing &lt;b&gt;" in page
    assert 'href="/model-health/reports/quarantine/b2/validation.json"' in page
    assert 'href="/model-health/reports/reports/drift/run1/report.html"' in page
    assert page.count("data:image/png;base64,") == 2  # performance over time, drifted features per run
    assert "the CI does not lie above 0" in page and "[-0.0300, 0.0100]" in page


@pytest.mark.parametrize(
    "key",
    [
        "reports/../raw/b1/file.csv",
        "reports/b1/../../raw/x/report.html",
        "/reports/b1/report.html",
        "reports//report.html",
        "raw/b1/report.html",
        "landing/report.html",
        "quarantine/b2/2016-05.csv",
        "reports/./b1/report.html",
        "reports\\..\\raw\\report.html",
        "",
    ],
)
def test_report_key_refuses_traversal_other_prefixes_and_data_files(key):
    with pytest.raises(model_health.ReportNotAllowed):
        model_health.report_key(key)


@given(
    st.lists(
        st.sampled_from(
            ["reports", "quarantine", "raw", "..", ".", "", "b1", "drift", "report.html", "validation.json", "x.csv"]
        ),
        min_size=1,
        max_size=6,
    )
)
def test_an_accepted_report_key_stays_inside_a_report_prefix(segments):
    key = "/".join(segments)
    try:
        accepted = model_health.report_key(key)
    except model_health.ReportNotAllowed:
        return
    parts = accepted.split("/")
    assert ".." not in parts and "." not in parts and "" not in parts
    assert accepted.startswith((CONFIG.storage.reports_prefix, CONFIG.storage.quarantine_prefix))
    assert parts[-1] in model_health.REPORT_FILES


def test_key_of_uri_only_in_the_pipeline_bucket():
    assert model_health.key_of_uri(f"s3://{BUCKET}/reports/b1/report.html") == "reports/b1/report.html"
    assert model_health.key_of_uri("s3://other-bucket/reports/b1/report.html") is None
    assert model_health.key_of_uri(None) is None


def test_report_view_url_for_task_logs():
    uri = f"s3://{BUCKET}/quarantine/b2/report.html"
    assert (
        model_health.report_view_url(uri, "http://127.0.0.1:8080/")
        == "http://127.0.0.1:8080/model-health/reports/quarantine/b2/report.html"
    )
    assert model_health.report_view_url(f"s3://{BUCKET}/raw/b2/x.csv", "http://h") is None


def test_age_text():
    assert model_health.age_text(NOW - dt.timedelta(seconds=5), NOW) == "5 s"
    assert model_health.age_text(NOW - dt.timedelta(days=3, hours=4), NOW) == "3 d 4 h"
    assert model_health.age_text(None, NOW) == ""


def test_plugin_prefix_matches_and_loading_it_does_not_import_the_app():
    import subprocess
    import sys

    code = (
        "import sys, model_health_plugin as p; from mlops.health.model import VIEW_PREFIX; "
        "assert p.VIEW_PREFIX == VIEW_PREFIX; assert 'mlops.health.app' not in sys.modules; "
        "assert 'airflow.api_fastapi.core_api.security' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(CONFIG_ROOT / "plugins"))
