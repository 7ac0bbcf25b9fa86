"""The Model health view in a real Airflow API server, on the real services.

The module runs the pipeline's DAGs on a warehouse and a registered model name of its own
(MLOPS__MODEL__REGISTERED_NAME, so other tests' models are untouched): ingest of a year of
the example data and of a file without its Humidity column (a real quarantine with its
reports in SeaweedFS), train (first champion), ingest of the next month, train again (a
decision with its CI), batch_score and drift_check (a drift run and its report). Then it
starts `airflow api-server` (this project's plugins/, the simple auth manager with a password
file, the same connections and model name) and checks:
  * over HTTP: refused without login; after Airflow's REST login (/auth/token) the page shows
    the champion and the quarantined batch, and its report links stream the reports;
  * in Debian's Chromium (Playwright, no browser download; skipped with the reason without it):
    log in through the UI, open "Model health" from the navigation, follow a report link,
    and save screenshots to docs/.
Run under the service-slot lock when sharing the machine.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path

import httpx
import pandas as pd
import pytest
from helpers import config_env, s3_client

import stack as stack_module
from example_warehouse import WAREHOUSE_CONN_ENV, own_warehouse
from mlops.config import get_config
from mlops.ingest import pipeline as ingest

# The warehouse is read and written through the same SQLAlchemy code on both dialects here:
# PostgreSQL, the default, is enough (the SQLite warehouse is covered where its dialect matters).
pytestmark = [pytest.mark.integration, pytest.mark.warehouses("postgres")]

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
TURKU = ROOT / "include" / "data" / "port_of_turku_weather.csv.gz"
STORAGE = get_config().storage
MODEL = f"health_view_{secrets.token_hex(3)}"
CHROMIUM = os.environ.get("MLOPS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BAD_KEY = f"{STORAGE.landing_prefix}missing column.csv"
# A year of history, then the next month; a small search keeps each train run short.
HISTORY, NEXT_MONTH = ("2015-03-01", "2016-03-01"), ("2016-03-01", "2016-04-01")
TRAIN_CONF = {"training_window_days": 365, "model_families": ["logistic_regression"], "search_iterations": 2}


def _empty_landing(s3) -> None:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=STORAGE.bucket, Prefix=STORAGE.landing_prefix):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=STORAGE.bucket, Key=obj["Key"])


def _land(s3, period: tuple[str, str], drop_column: str | None = None) -> str:
    """Drop the example rows of [start, end) into landing (without a column: a file to quarantine)."""
    raw = pd.read_csv(TURKU)
    rows = raw[(raw["Timestamp"] >= period[0]) & (raw["Timestamp"] < period[1])]
    key = f"{STORAGE.landing_prefix}{period[0][:7]}.csv"
    if drop_column:
        rows, key = rows.drop(columns=[drop_column]), BAD_KEY
    body = rows.to_csv(index=False).encode()
    s3.put_object(Bucket=STORAGE.bucket, Key=key, Body=body)
    return ingest.batch_id_of_content(key, body)


def _run(dagbag, dag_id: str, conf: dict | None = None, expect: str = "success"):
    dag_run = dagbag.run(dag_id, conf)
    assert dag_run.state == expect, f"{dag_id}: {dag_run.state}"
    return dag_run


def _aliases() -> dict:
    from mlops.io.registry import CHALLENGER, CHAMPION, alias_version, client

    mlflow_client = client()
    return {alias: alias_version(MODEL, alias, mlflow_client) for alias in (CHAMPION, CHALLENGER)}


def _fill_pipeline(stack, dagbag) -> dict:
    """The real pipeline on the example data: ingest (a batch loaded, one quarantined), train
    (first champion), the next month ingested, train again (a decision with its CI),
    batch_score, drift_check (a drift run and its report)."""
    s3 = s3_client(stack)
    _empty_landing(s3)
    batches = {"good": _land(s3, HISTORY), "bad": _land(s3, HISTORY, drop_column="Humidity")}
    _run(dagbag, "ingest", expect="failed")  # the bad file is quarantined and fails its task
    _run(dagbag, "train", {**TRAIN_CONF, "reason": "health view test"})
    batches["next"] = _land(s3, NEXT_MONTH)
    _run(dagbag, "ingest")
    _run(dagbag, "train", {**TRAIN_CONF, "reason": "next month"})
    _run(dagbag, "batch_score")
    _run(dagbag, "drift_check", {"window_days": 30, "cooldown_hours": 0})
    return {"batches": batches, "versions": _aliases()}


@pytest.fixture(scope="module")
def health_server(stack, dagbag, tmp_path_factory):
    """Data in the services, then a real `airflow api-server` with the plugin; yields what the tests need."""
    connection = own_warehouse(stack, tmp_path_factory, "health_view")
    with config_env(**{WAREHOUSE_CONN_ENV: json.dumps(connection)}, MLOPS__MODEL__REGISTERED_NAME=MODEL):
        filled = _fill_pipeline(stack, dagbag)
        env = {**os.environ, "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16)}
    password = secrets.token_urlsafe(12)
    Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).write_text(
        json.dumps({stack.airflow_user: password})
    )
    base_url = env["AIRFLOW__API__BASE_URL"].rstrip("/")
    name = "airflow-api-server-health"
    proc = stack_module._spawn(stack, name, [str(stack_module.BIN / "airflow"), "api-server"], env)
    try:
        log_file = stack.state_dir / "logs" / f"{name}.log"
        stack_module.wait_http(f"{base_url}/api/v2/monitor/health", proc, 240, "Airflow API server", log_file)
        yield {"url": base_url, "user": stack.airflow_user, "password": password, **filled}
    finally:
        stack_module.stop_process(stack, name)


@pytest.fixture(scope="module")
def token(health_server) -> str:
    """A JWT from the simple auth manager's REST login."""
    response = httpx.post(
        f"{health_server['url']}/auth/token",
        json={"username": health_server["user"], "password": health_server["password"]},
        timeout=30,
    )
    assert response.status_code in (200, 201), response.text
    return response.json()["access_token"]


def test_plugin_is_registered_with_a_nav_entry(health_server, token):
    response = httpx.get(
        f"{health_server['url']}/api/v2/plugins", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    (plugin,) = [p for p in response.json()["plugins"] if p["name"] == "model_health"]
    assert plugin["fastapi_apps"][0]["url_prefix"] == "/model-health"
    (view,) = plugin["external_views"]
    assert view["name"] == "Model health" and view["destination"] == "nav" and view["url_route"] == "model-health"


def test_refused_without_login(health_server):
    url = health_server["url"]
    assert httpx.get(f"{url}/model-health/", timeout=30).status_code == 401
    assert (
        httpx.get(f"{url}/model-health/", headers={"Authorization": "Bearer not-a-jwt"}, timeout=30).status_code == 403
    )
    key = f"{STORAGE.quarantine_prefix}{health_server['batches']['bad']}/validation.json"
    assert httpx.get(f"{url}/model-health/reports/{key}", timeout=30).status_code == 401
    browser = httpx.get(f"{url}/model-health/", headers={"Accept": "text/html"}, timeout=30)
    assert browser.status_code == 401 and "/auth/login" in browser.text


def _report_links(html: str) -> list[str]:
    return re.findall(r'href="(/model-health/reports/[^"]+)"', html)


def test_page_shows_champion_and_quarantined_batch_and_serves_its_reports(health_server, token):
    url, batches, versions = health_server["url"], health_server["batches"], health_server["versions"]
    auth = {"Authorization": f"Bearer {token}"}
    page = httpx.get(f"{url}/model-health/", headers=auth, timeout=120)
    assert page.status_code == 200, page.text
    html = page.text
    assert 'class="error"' not in html, "no section may have failed"
    assert f"champion: {MODEL} version {versions['champion']}" in html
    if versions["challenger"]:
        assert f"challenger: {MODEL} version {versions['challenger']}" in html
    assert "persistence baseline" in html and "<td>roc_auc</td>" in html
    assert "first_champion" in html and "CI of difference" in html
    assert "missing column.csv" in html and batches["bad"] in html
    assert "loaded: 2" in html and "quarantined: 1" in html
    links = _report_links(html)
    validation = f"/model-health/reports/{STORAGE.quarantine_prefix}{batches['bad']}/validation.json"
    report = f"/model-health/reports/{STORAGE.quarantine_prefix}{batches['bad']}/report.html"
    assert validation in links and report in links
    result = httpx.get(f"{url}{validation}", headers=auth, timeout=30)
    assert result.status_code == 200 and result.headers["content-type"].startswith("application/json")
    assert "Humidity" in json.dumps(result.json())
    shown = httpx.get(f"{url}{report}", headers=auth, timeout=30)
    assert shown.status_code == 200 and "Humidity" in shown.text
    assert shown.headers["content-security-policy"].startswith("sandbox")
    (drift_report,) = [link for link in links if "/drift/" in link and link.endswith("/report.html")]
    drift = httpx.get(f"{url}{drift_report}", headers=auth, timeout=30)
    assert drift.status_code == 200 and "Drift report" in drift.text


def test_report_endpoint_refuses_other_keys(health_server, token):
    url, batch = health_server["url"], health_server["batches"]["bad"]
    auth = {"Authorization": f"Bearer {token}"}
    for key in (
        f"{STORAGE.raw_prefix}{health_server['batches']['good']}/2016-03.csv",
        f"{STORAGE.quarantine_prefix}{batch}/missing_column.csv",
        f"{STORAGE.quarantine_prefix}%2e%2e/{STORAGE.raw_prefix}x/report.html",
        f"{STORAGE.reports_prefix}nothing-here/report.html",
    ):
        response = httpx.get(f"{url}/model-health/reports/{key}", headers=auth, timeout=30)
        assert response.status_code == 404, (key, response.status_code, response.text)


# ------------------------------------------------------------------------------------ browser


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium through Playwright (no browser download); skip with the reason without it."""
    if not Path(CHROMIUM).exists():  # `make test` installs it where it can (root with apt-get)
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium, as `make test` does as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def test_browser_login_nav_health_view_and_report(health_server, chromium):
    url, batches = health_server["url"], health_server["batches"]
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(f"{url}/", wait_until="networkidle")
    page.get_by_label(re.compile("username", re.I)).fill(health_server["user"])
    page.get_by_label(re.compile("password", re.I)).fill(health_server["password"])
    page.get_by_role("button", name=re.compile("sign in|log ?in", re.I)).click()
    page.wait_for_url(re.compile(r"^(?!.*/auth/login).*$"), timeout=60_000)

    page.get_by_role("button", name=re.compile("^browse$", re.I)).click()
    page.get_by_role("menuitem", name="Model health").click()
    page.wait_for_url(re.compile(r"/plugin/model-health"), timeout=60_000)
    frame = page.frame_locator("iframe")
    frame.get_by_role("heading", name="Model health").wait_for(timeout=120_000)
    champion = frame.locator("#champion")
    assert f"version {health_server['versions']['champion']}" in champion.inner_text()
    assert batches["bad"] in frame.locator("body").inner_text()
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / "health_view.png"))
    whole = context.new_page()  # the view on its own, the whole page (the iframe scrolls inside the UI)
    whole.goto(f"{url}/model-health/", wait_until="load")
    whole.screenshot(path=str(DOCS / "health_view_full.png"), full_page=True)
    whole.close()

    frame.locator(f'a[href$="{batches["bad"]}/report.html"]').click()
    quarantine = frame.get_by_role("heading", name=re.compile(f"Batch {batches['bad']}"))
    quarantine.wait_for(timeout=60_000)  # the quarantine report, opened in the view's frame
    assert "Humidity" in frame.locator("body").inner_text()
    page.screenshot(path=str(DOCS / "health_view_quarantine_report.png"))

    page.goto(f"{url}/plugin/model-health", wait_until="networkidle")
    frame.locator('a[href*="/drift/"][href$="/report.html"]').first.click()
    frame.get_by_role("heading", name=re.compile("^Drift report")).wait_for(timeout=60_000)
    page.screenshot(path=str(DOCS / "health_view_drift_report.png"))
    context.close()
