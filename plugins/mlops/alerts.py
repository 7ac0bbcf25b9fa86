"""Alerts on task failures, through the channel chosen in config.alerts: log, email or webhook.

Every DAG's on_failure_callback (mlops.dag_defaults) and the callback of its freshness
deadline alerts (missed deadlines). Sending an alert never raises: a broken alert channel is
logged, it must not hide the failure being reported.
"""

from __future__ import annotations

import json
import logging

from mlops.config import get_config

log = logging.getLogger(__name__)


def format_failure(context) -> tuple[str, str]:
    """(subject, body) describing a failed task instance from its Airflow context."""
    ti = context.get("task_instance") or context.get("ti")
    dag_id = getattr(ti, "dag_id", "?")
    task_id = getattr(ti, "task_id", "?")
    map_index = getattr(ti, "map_index", -1)
    run_id = context.get("run_id") or getattr(ti, "run_id", "?")
    exception = context.get("exception")
    where = f"{dag_id}.{task_id}" + (f"[{map_index}]" if map_index is not None and map_index >= 0 else "")
    subject = f"[mlops] {where} failed"
    body = (
        f"task: {where}\nrun: {run_id}\ntry: {getattr(ti, 'try_number', '?')}\n\n{exception or 'no exception recorded'}"
    )
    log_url = getattr(ti, "log_url", None)
    if log_url:
        body += f"\n\nlog: {log_url}"
    return subject, body


def send_alert(subject: str, body: str) -> str:
    """Send through the configured channel; returns the channel used ('log' when the channel failed)."""
    cfg = get_config().alerts
    try:
        if cfg.channel == "webhook":
            if not cfg.webhook_url:
                raise ValueError("alerts.webhook_url is empty")
            import urllib.request

            payload = json.dumps({"text": f"{subject}\n{body}", "subject": subject, "body": body}).encode()
            request = urllib.request.Request(
                cfg.webhook_url, data=payload, headers={"Content-Type": "application/json"}, method="POST"
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
            log.info("alert sent to the webhook: %s", subject)
            return "webhook"
        if cfg.channel == "email":
            if not cfg.email_to:
                raise ValueError("alerts.email_to is empty")
            from airflow.providers.smtp.hooks.smtp import SmtpHook

            with SmtpHook() as hook:
                hook.send_email_smtp(to=cfg.email_to, subject=subject, html_content=f"<pre>{_escape(body)}</pre>")
            log.info("alert e-mailed to %s: %s", cfg.email_to, subject)
            return "email"
    except Exception:  # noqa: BLE001 - an alert must never mask the failure it reports
        log.exception("could not send the alert through %s; logging it instead", cfg.channel)
    log.error("ALERT %s\n%s", subject, body)
    return "log"


def alert_on_failure(context) -> None:
    """on_failure_callback: raise an alert naming the task, the run and the error."""
    subject, body = format_failure(context)
    send_alert(subject, body)


def format_missed_deadline(context: dict | None, rule: str) -> tuple[str, str]:
    """(subject, body) for a missed Airflow deadline.

    `context` is what the scheduler hands a deadline callback (airflow.models.deadline
    Deadline.handle_miss): {"dag_run": the run as the REST API shows it, "deadline":
    {"id", "deadline_time"}}; `rule` says which freshness rule the deadline stands for.
    """
    context = context or {}
    run = context.get("dag_run") or {}
    dag_id = run.get("dag_id", "?")
    run_id = run.get("dag_run_id") or run.get("run_id") or "?"
    deadline = (context.get("deadline") or {}).get("deadline_time", "?")
    subject = f"[mlops] {dag_id} missed its deadline"
    body = (
        f"dag: {dag_id}\nrun: {run_id}\nrule: {rule}\ndeadline: {deadline}\n"
        f"run state: {run.get('state', '?')}, queued at {run.get('queued_at', '?')}, "
        f"logical date {run.get('logical_date', '?')}"
    )
    url = _dag_run_url(dag_id, run_id)
    if url:
        body += f"\n\nrun: {url}"
    return subject, body


def alert_on_missed_deadline(context: dict | None = None, rule: str = "") -> None:
    """Deadline callback (SyncCallback of the freshness DeadlineAlerts): alert on the configured channel."""
    subject, body = format_missed_deadline(context, rule)
    send_alert(subject, body)


def _dag_run_url(dag_id: str, run_id: str) -> str | None:
    """The run's page in the Airflow UI ([api] base_url), None when it cannot be built."""
    try:
        from airflow.utils.helpers import build_airflow_dagrun_url

        return build_airflow_dagrun_url(dag_id=dag_id, run_id=run_id)
    except Exception:  # noqa: BLE001 - a missing link must not stop the alert
        log.exception("could not build the URL of %s %s", dag_id, run_id)
        return None


def _escape(text: str) -> str:
    import html

    return html.escape(text)
