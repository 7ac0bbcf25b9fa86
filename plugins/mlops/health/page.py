"""The HTML of the "Model health" view: one server-rendered page, plots embedded as PNG.

Input: the dict of mlops.health.model.gather(). Every value from the warehouse, MLflow or a
file name is escaped (a quarantine reason may quote the content of a bad file). Report links
point at the view's own report endpoint (<base>/reports/<key>), never at s3:// URIs.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import urllib.parse

from mlops.io.registry import CHALLENGER, CHAMPION

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:16px;color:#1f2933;font-size:14px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:24px 0 8px;border-bottom:1px solid #d9e2ec;padding-bottom:4px}
table{border-collapse:collapse;margin:4px 0 8px} th,td{border:1px solid #d9e2ec;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f4f8} td.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;gap:16px;flex-wrap:wrap} .card{border:1px solid #bcccdc;border-radius:6px;padding:8px 12px;min-width:320px}
.muted{color:#627d98} .error{color:#b91c1c} .ok{color:#047857} .warn{color:#b45309}
.badge{display:inline-block;border-radius:4px;padding:0 6px;font-size:12px;background:#e4e7eb}
.badge.quarantined,.badge.rejected,.badge.fired{background:#fde2e2;color:#9b1c1c}
.badge.loaded,.badge.promoted,.badge.first_champion{background:#def7ec;color:#03543f}
.badge.forced,.badge.rollback,.badge.duplicate{background:#fdf6b2;color:#723b13}
img{max-width:100%}
"""


def _e(value) -> str:
    return "" if value is None else html.escape(str(value))


def _num(value, digits: int = 4) -> str:
    if value is None:
        return "—"
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return _e(value)


def _badge(text) -> str:
    return f'<span class="badge {_e(text)}">{_e(text)}</span>' if text else ""


def report_link(base: str, key: str) -> str:
    """An <a> to the view's report endpoint for key, labelled with the file name."""
    href = f"{base}/reports/{urllib.parse.quote(key)}"
    # No target="_blank": the UI's iframe may not allow pop-ups; the report opens in the frame.
    return f'<a href="{_e(href)}">{_e(key.rsplit("/", 1)[-1])}</a>'


def _table(headers: list[str], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(rows_cell for rows_cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _td(value, num: bool = False) -> str:
    return f'<td class="num">{value}</td>' if num else f"<td>{value}</td>"


def _png(fig) -> str:
    """A matplotlib Figure (object API: thread-safe in the API server, unlike pyplot) as a data URI."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


# --------------------------------------------------------------------------- plots


def performance_plot(runs: list[dict]) -> str | None:
    """Realized accuracy and F1 of the champion (and challenger) per drift run against the holdout."""
    from matplotlib.figure import Figure

    points = sorted((r for r in runs if r.get("realized_f1") is not None), key=lambda r: r["window_end"])
    if not points:
        return None
    x = [dt.datetime.fromisoformat(str(r["window_end"])) for r in points]
    fig = Figure(figsize=(8, 3))
    ax = fig.subplots()
    for metric, color in (("accuracy", "tab:blue"), ("f1", "tab:orange")):
        ax.plot(x, [r[f"realized_{metric}"] for r in points], "o-", color=color, label=f"champion realized {metric}")
        holdout = [r[f"holdout_{metric}"] for r in points]
        ax.plot(x, holdout, "_--", markersize=18, color=color, alpha=0.6, label=f"holdout {metric}")
        shadow = [
            (xi, r[f"challenger_{metric}"])
            for xi, r in zip(x, points, strict=True)
            if r.get(f"challenger_{metric}") is not None
        ]
        if shadow:
            ax.plot(*zip(*shadow, strict=True), "x:", color=color, label=f"challenger realized {metric}")
    if len(x) == 1:  # one run: a month either side, not matplotlib's default years
        ax.set_xlim(x[0] - dt.timedelta(days=30), x[0] + dt.timedelta(days=30))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("end of the drift window (data time)")
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    return _png(fig)


def drift_plot(runs: list[dict]) -> str | None:
    """Which features drifted in which run: a features x runs grid, filled where a feature drifted."""
    from matplotlib.figure import Figure

    runs = sorted(runs, key=lambda r: r["window_end"])
    features = sorted({f for r in runs for f in r["drifted_features"]})
    if not runs or not features:
        return None
    grid = [[1 if f in r["drifted_features"] else 0 for r in runs] for f in features]
    fig = Figure(figsize=(8, 0.5 + 0.35 * len(features)))
    ax = fig.subplots()
    ax.imshow(grid, aspect="auto", cmap="Reds", vmin=0, vmax=1.3, interpolation="nearest")
    ax.set_yticks(range(len(features)), features, fontsize=8)
    step = max(1, len(runs) // 12)
    ax.set_xticks(range(0, len(runs), step), [str(r["window_end"])[:10] for r in runs][::step], fontsize=7, rotation=30)
    ax.set_title("features that drifted per drift_check run (window end)", fontsize=9)
    return _png(fig)


# --------------------------------------------------------------------------- sections


def freshness_section(rows: list[dict]) -> str:
    body = [
        [
            _td(_e(r["what"])),
            _td(_e(r["when"] or "never")),
            _td(_e(r["age"]), True),
            _td(f'<span class="muted">{_e(r["source"])}</span>'),
        ]
        for r in rows
    ]
    return "<h2>Freshness</h2>" + _table(["what", "when (UTC)", "age", "source"], body, "no data")


def _model_card(card: dict | None, alias: str, mlflow_url: str) -> str:
    if not card:
        return f'<div class="card"><h3>{_e(alias)}</h3><p class="muted">no version has the alias {_e(alias)}</p></div>'
    link = f"{mlflow_url.rstrip('/')}/#/models/{urllib.parse.quote(card['model_name'])}/versions/{urllib.parse.quote(card['version'])}"
    metrics = [
        [
            _td(_e(m["metric"])),
            _td(_num(m["holdout"]), True),
            _td(_num(m["persistence"]), True),
            _td(_num(m["base_rate"]), True),
        ]
        for m in card["metrics"]
    ]
    window = f"{_e(card['window_start'] or '?')} .. {_e(card['window_end'] or '?')}"
    return (
        f'<div class="card" id="{_e(alias)}"><h3>{_e(alias)}: {_e(card["model_name"])} version {_e(card["version"])}</h3>'
        f"<p>family <b>{_e(card['family'] or '?')}</b>; training window {window}; registered {_e(card['registered_at'])}"
        + (f"; replaced v{_e(card['previous_champion'])}" if card.get("previous_champion") else "")
        + f' (<a href="{_e(link)}" target="_blank" rel="noopener">MLflow</a>)</p>'
        + _table(["metric", "holdout", "persistence baseline", "base-rate baseline"], metrics, "no metrics recorded")
        + f'<p class="muted">{_e(card["description"])}</p></div>'
    )


def models_section(models: dict) -> str:
    mlflow_url = models.get("mlflow_url", "")
    cards = "".join(_model_card(models.get(alias), alias, mlflow_url) for alias in (CHAMPION, CHALLENGER))
    return f'<h2>Models ({_e(models.get("model_name", ""))})</h2><div class="cards">{cards}</div>'


def decisions_section(rows: list[dict]) -> str:
    body = [
        [
            _td(_e(r["decided_at"])),
            _td(_e(r["action"])),
            _td(_badge(r["outcome"])),
            _td(_e(r["candidate_version"])),
            _td(f"{_e(r['champion_before'] or '—')} → {_e(r['champion_after'] or '—')}"),
            _td(_e(r["metric"])),
            _td(_num(r["candidate_score"]), True),
            _td(_num(r["champion_score"]), True),
            _td(f"[{_num(r['ci_low'])}, {_num(r['ci_high'])}]" if r["ci_low"] is not None else "—", True),
            _td(_e(r["reason"])),
            _td(_e(f"{r['triggered_by']} ({r['dag_id']} {r['run_id']})")),
        ]
        for r in rows
    ]
    headers = [
        "decided (UTC)",
        "action",
        "outcome",
        "candidate",
        "champion",
        "metric",
        "candidate",
        "champion",
        "CI of difference",
        "reason",
        "trigger",
    ]
    return "<h2>Decisions</h2>" + _table(headers, body, "no decision recorded yet (train has not run)")


def drift_section(rows: list[dict], base: str) -> str:
    body = [
        [
            _td(_e(f"{r['window_start']} .. {r['window_end']}")),
            _td(_e(r["model_version"])),
            _td(f"{_e(r['n_drifted'])} ({_num(r['drifted_share'], 2)}): {_e(', '.join(r['drifted_features']))}"),
            _td(f"{_num(r['realized_f1'], 3)} / {_num(r['holdout_f1'], 3)} (n={_e(r['n_labeled'])})", True),
            _td(_badge("fired") if r["rule_fired"] else "no"),
            _td(_e(r["reason"])),
            _td(_e(f"{r['retrain_decision'] or ''} {r['retrain_detail'] or ''}")),
            _td(" ".join(report_link(base, k) for k in r["reports"]) or "—"),
        ]
        for r in rows
    ]
    plots = [p for p in (performance_plot(rows), drift_plot(rows)) if p]
    images = "".join(f'<img alt="plot" src="{p}">' for p in plots)
    headers = [
        "window (data time)",
        "champion",
        "drifted features",
        "realized F1 / holdout F1",
        "rule",
        "reason",
        "retraining",
        "report",
    ]
    return "<h2>Performance and drift</h2>" + images + _table(headers, body, "no drift_check run yet")


def batches_section(rows: list[dict], counts: dict, landing: dict | None, base: str) -> str:
    summary = ", ".join(f"{_e(k)}: {_e(v)}" for k, v in sorted(counts.items())) or "none"
    waiting = (
        f"; files waiting in landing: {_e(landing['waiting'])}{'+' if landing['truncated'] else ''}" if landing else ""
    )
    body = [
        [
            _td(_e(r["loaded_at"])),
            _td(_badge(r["status"])),
            _td(_e(r["object_key"])),
            _td(f"<code>{_e(r['batch_id'])}</code>"),
            _td(f"{_e(r['rows_kept'])} / {_e(r['rows_in'])}", True),
            _td(_e(r["reason"])),
            _td(" ".join(report_link(base, k) for k in r["reports"]) or "—"),
        ]
        for r in rows
    ]
    headers = ["received (UTC)", "status", "file", "batch", "rows kept / in", "reason", "reports"]
    return f"<h2>Batches</h2><p>batches by status: {summary}{waiting}</p>" + _table(
        headers, body, "no batch ingested yet"
    )


def render(data: dict, base: str) -> str:
    """The whole page. base: the URL path the app is mounted at (e.g. /model-health)."""
    errors = "".join(f'<p class="error">{_e(name)}: {_e(msg)}</p>' for name, msg in data["errors"].items())
    sections = [
        models_section(data.get("models") or {}),
        freshness_section(data.get("freshness", [])),
        decisions_section(data.get("decisions", [])),
        drift_section(data.get("drift_runs", []), base),
        batches_section(data.get("batches", []), data.get("batch_counts", {}), data.get("landing"), base),
    ]
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Model health</title><style>{STYLE}</style></head><body>"
        f"<h1>Model health</h1><p class='muted'>generated {_e(data['generated_at'])} UTC; "
        "ages are wall-clock time since the event</p>" + errors + "".join(sections) + "</body></html>"
    )
