"""The HTML report of a drift_check run: one self-contained file (plots embedded as PNG).

Rendered from the result dict of mlops.monitoring.check.measure: the verdict and its reason, a
table of every feature's statistics, reference against current distribution per feature
(the reference's bins, so what is plotted is what PSI and the tests compared), the model's
score distribution, and realized performance per day beside the holdout metrics.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np

TITLE = "Drift report"
PLOTTED_METRICS = ("accuracy", "f1", "brier")
BUCKET_NAMES = {"D": "day", "W": "week", "M": "month"}


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _share(counts) -> np.ndarray:
    counts = np.asarray(counts, dtype=float)
    return counts / counts.sum() if counts.sum() else counts


def distribution_plot(title: str, bins: dict) -> str:
    """Bars of the reference, the season-weighted reference (if any) and current share per bin."""
    import matplotlib.pyplot as plt

    labels = bins["labels"]
    x = np.arange(len(labels))
    series = [("whole reference", bins["reference"], "#4c72b0")]
    if bins.get("seasonal_reference") is not None:
        series.append(("same time of year", bins["seasonal_reference"], "#55a868"))
    series.append(("current", bins["current"], "#dd8452"))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(7, 2.8))
    for i, (name, counts, color) in enumerate(series):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, _share(counts), width=width, label=name, color=color)
    ax.set_xticks(x, labels, rotation=35, ha="right", fontsize=7)
    ax.set_ylabel("share of rows")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)


def performance_plot(performance: dict) -> str | None:
    """Accuracy, F1 and Brier per bucket: realized (champion solid, challenger dashed) and the
    champion's estimate (CBPE, dotted) side by side, the holdout as a grey line."""
    import matplotlib.pyplot as plt

    lines = [
        ("champion realized", performance.get("champion"), "-"),
        ("challenger realized", performance.get("challenger"), "--"),
        ("champion estimated", performance.get("estimated"), ":"),
    ]
    lines = [(name, block, style) for name, block, style in lines if block and block.get("periods")]
    if not lines:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(11, 2.8), sharex=False)
    for ax, metric in zip(axes, PLOTTED_METRICS, strict=True):
        for name, block, style in lines:
            periods = [d["period"] for d in block["periods"]]
            values = [np.nan if d[metric] is None else d[metric] for d in block["periods"]]
            ax.plot(periods, values, style, marker=".", label=name)
        if metric in performance.get("holdout", {}):
            ax.axhline(performance["holdout"][metric], color="grey", linestyle="-.", linewidth=0.8, label="holdout")
        ax.set_title(f"{metric} per {BUCKET_NAMES.get(performance.get('bucket'), 'period')}", fontsize=10)
        ax.tick_params(axis="x", labelrotation=60, labelsize=6)
        if len(ax.get_xticks()) > 10:
            ax.set_xticks(ax.get_xticks()[:: max(1, len(ax.get_xticks()) // 8)])
    axes[0].legend(fontsize=7)
    return _png(fig)


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if value != 0 and abs(value) < 10**-digits:
            return f"{value:.2e}"
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _metrics_table(performance: dict) -> str:
    """Realized and estimated performance side by side with the holdout, and what was judged."""
    estimated = performance.get("estimated") or {}
    blocks = [
        ("champion realized (labels arrived)", performance.get("champion")),
        ("champion estimated (CBPE, whole window)", estimated or None),
        ("champion estimated, same labelled predictions", estimated.get("on_labeled")),
        ("champion estimated, truth not yet arrived", estimated.get("unlabeled")),
        ("challenger realized", performance.get("challenger")),
        ("champion holdout", performance.get("holdout") or None),
    ]
    rows = [
        f"<tr><td>{name}</td><td>{_fmt(block.get('n'))}</td>"
        + "".join(f"<td>{_fmt(block.get(m))}</td>" for m in PLOTTED_METRICS)
        + "</tr>"
        for name, block in blocks
        if block
    ]
    if not rows:
        return "<p>No predictions with arrived labels in the window.</p>"
    notes = list(performance.get("notes") or [])
    if performance.get("calibration"):
        notes.insert(0, "Champion " + performance["calibration"]["status"])
    return (
        "<table><tr><th></th><th>predictions</th><th>accuracy</th><th>F1</th><th>Brier</th></tr>"
        + "".join(rows)
        + "</table>"
        + "".join(f"<p>{html.escape(n)}.</p>" for n in notes)
    )


def _feature_row(f: dict) -> str:
    """One row of the features table: the raw shift and the shift the season does not explain."""
    css = ' class="drift"' if f["drifted"] else ""
    raw, seasonal = f.get("raw") or f, f.get("seasonal") or f

    def cells(stats: dict) -> str:
        return f"<td>{_fmt(stats.get('psi'))}</td><td>{_fmt(stats.get('statistic'))}</td><td>{_fmt(stats.get('p_value'))}</td>"

    return (
        f"<tr{css}><td>{html.escape(f['feature'])}</td><td>{f['type']}</td><td>{f['n_current']}</td><td>{f['test']}</td>"
        f"{cells(raw)}{cells(seasonal)}"
        f"<td>{_fmt(f.get('distance'))} <small>{html.escape(f.get('distance_name') or '')}</small></td>"
        f"<td>{_fmt(f['reference_missing_rate'])} → {_fmt(f['current_missing_rate'])}</td>"
        f"<td>{'yes' if f['drifted'] else 'no'} <small>({html.escape(f.get('basis', 'raw'))})</small></td>"
        f"<td>{html.escape('; '.join(f['reasons']))}</td></tr>"
    )


def _season_html(season: dict | None) -> str:
    if not season:
        return ""
    shares = ", ".join(f"{k}: {v:.0%}" for k, v in season["window_shares"].items())
    basis = (
        "the shift not explained by the season (window against the reference of the same "
        f"{season['key']}s, weighted by the window's mix)"
        if season["adjusted"]
        else "the raw shift against the whole reference"
    )
    notes = "".join(f"<p><b>Note:</b> {html.escape(n)}.</p>" for n in season["notes"])
    return f"<p>Season key: {html.escape(season['key'])}; window mix {html.escape(shares)}. The rule uses {basis}.</p>{notes}"


def _source_html(source: dict | None) -> str:
    """Where the window's feature counts came from: stored batch profiles or rows, and why."""
    if not source:
        return ""
    notes = "".join(f"<p><b>Note:</b> {html.escape(n)}.</p>" for n in source.get("notes") or [])
    return f"<p>Feature counts from {html.escape(source['kind'])}.</p>{notes}"


def render(result: dict) -> str:
    """The report as one HTML string."""
    import matplotlib

    matplotlib.use("Agg")
    rule = result["rule"]
    feature_rows = [_feature_row(f) for f in result["features"]]
    plots = _feature_plots(result["features"])
    score_html = _score_html(result.get("scores"))
    performance = result["performance"]
    perf_plot = performance_plot(performance)
    drops = performance.get("drops") or []
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{TITLE} {html.escape(result["drift_run_id"])}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1200px; }}
table {{ border-collapse: collapse; font-size: 13px; }}
td, th {{ border: 1px solid #ccc; padding: 3px 7px; text-align: left; }}
tr.drift td {{ background: #fde2e1; }}
.verdict {{ font-size: 1.2em; font-weight: bold; color: {"#b00" if rule["fired"] else "#070"}; }}
</style></head><body>
{_summary_html(result)}
<h2>Features</h2>
{_season_html(result.get("season"))}
{_source_html(result.get("source"))}
<table><tr><th rowspan="2">feature</th><th rowspan="2">type</th><th rowspan="2">rows</th><th rowspan="2">test</th>
<th colspan="3">raw (whole reference)</th><th colspan="3">not explained by season</th>
<th rowspan="2">effect</th><th rowspan="2">missing rate</th><th rowspan="2">drifted</th><th rowspan="2">why</th></tr>
<tr><th>PSI</th><th>statistic</th><th>p-value</th><th>PSI</th><th>statistic</th><th>p-value</th></tr>
{"".join(feature_rows)}</table>
<h2>Prediction drift</h2>
{score_html}
<h2>Performance: realized and estimated</h2>
{_metrics_table(performance)}
{"".join(f"<p>{html.escape(d)}</p>" for d in drops)}
{f'<img src="{perf_plot}">' if perf_plot else ""}
<h2>Distributions: reference against current</h2>
{"".join(plots)}
</body></html>
"""


def _feature_plots(features: list[dict]) -> list[str]:
    """One heading and distribution plot per feature that has bins."""
    return [
        f'<h3>{html.escape(f["feature"])}{" (drifted)" if f["drifted"] else ""}</h3><img src="{distribution_plot(f["feature"], f["bins"])}">'
        for f in features
        if f.get("bins")
    ]


def _score_html(scores: dict | None) -> str:
    """The prediction drift section: the champion's score shift and its plot."""
    if not scores:
        return "<p>No champion predictions in the window.</p>"
    return (
        f"<p>PSI {_fmt(scores['psi'])}, chi-square p-value {_fmt(scores['p_value'])}, mean score "
        f"{_fmt(scores['reference_mean'])} (reference) → {_fmt(scores['current_mean'])} (current), "
        f"{scores['n_current']} predictions.</p>"
        f'<img src="{distribution_plot("champion score", scores["bins"])}">'
    )


def _summary_html(result: dict) -> str:
    """The verdict, the model, reference and window, and the thresholds."""
    rule, window, champion = result["rule"], result["window"], result["champion"]
    thresholds, performance = result["thresholds"], result["performance"]
    verdict = "RETRAINING RULE FIRED" if rule["fired"] else "no drift rule fired"
    return f"""<h1>{TITLE}: {html.escape(result["drift_run_id"])}</h1>
<p class="verdict">{verdict}</p>
<p>{html.escape(rule["reason"])}</p>
<p>Model <b>{html.escape(champion["model_name"])}</b> version {html.escape(champion["version"])} (champion);
reference: its training data, {result["n_reference"]} rows (profile of {html.escape(str(result.get("reference_created_at")))}).
Current: {result["n_current"]} observations in ({window["start"]}, {window["end"]}] ({window["days"]} days).
Generated {result["created_at"]} UTC by Airflow run {html.escape(result["airflow_run_id"])}.</p>
<p>Thresholds: PSI ≥ {thresholds["psi"]:g} together with KS p &lt; {thresholds["ks_pvalue"]:g} (numeric) or
chi-square p &lt; {thresholds["chi2_pvalue"]:g} (categorical); missing rate change &gt; {thresholds["missing_rate_change"]:g};
rule: drifted share ≥ {thresholds["drifted_feature_share"]:g} or realized or estimated performance worse than
holdout by &gt; {thresholds["performance_drop"]:g} (over ≥ {performance.get("min_labeled", thresholds["min_labeled"])}
predictions at this data set's frequency).</p>"""
