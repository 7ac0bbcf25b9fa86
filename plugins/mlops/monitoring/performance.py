"""How well the champion performs on the window: realized where the truth has arrived,
estimated from its own probabilities where it has not (and beside the realized, to check it).

Realized: the champion's predictions joined to the label that arrived label.steps_ahead
periods later (mlops.labels.add_label); accuracy, F1 of the positive class, Brier score.

Estimated: confidence-based performance estimation (CBPE) as NannyML does it
(https://nannyml.readthedocs.io/en/stable/how_it_works/performance_estimation.html, section
"Confidence-based Performance Estimation (CBPE)"). If the model is
calibrated, a prediction of probability p is right with probability p when it says 1 and
1 - p when it says 0, so every cell of the confusion matrix has an expected value:
E[TP] = sum of p over predicted 1, E[FP] = sum of 1 - p over predicted 1, E[FN] = sum of p
over predicted 0, E[TN] = sum of 1 - p over predicted 0. Expected accuracy = (E[TP] + E[TN]) / n
(= mean(max(p, 1 - p)) at threshold 0.5), expected F1 = 2 E[TP] / (2 E[TP] + E[FP] + E[FN]),
expected Brier = mean(p (1 - p)) (the expectation of (p - y)^2 for y ~ Bernoulli(p)).
It is only as good as the calibration: the champion's holdout calibration is read from the
reference profile (mlops.monitoring.profile.calibration_profile) when train recorded it, otherwise the
report says "calibration unknown"; where labels did arrive, the report also shows the
estimate next to the realized value on the same predictions.

Minimums and plot buckets follow the data set's frequency: a window of daily data holds 30
predictions, not 720, so the configured minimum of labelled predictions is capped at half
the periods the window holds (never below MIN_LABELED_FLOOR), and metrics are plotted per
day for hourly data, per week for daily data, per month for coarser data.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

PERFORMANCE_METRICS = ("accuracy", "f1", "brier")
# Model version tag: the holdout metrics of the version, JSON {metric: value} (mlops.training.pipeline).
HOLDOUT_METRICS_TAG = "holdout_metrics"
# For these metrics lower is better; a drop is an increase.
LOWER_IS_BETTER = {"brier"}
# No performance judgement on fewer labelled (or estimated) predictions than this.
MIN_LABELED_FLOOR = 20
# A plot bucket holds at least this many periods of the data set's frequency.
MIN_PERIODS_PER_BUCKET = 7
CBPE_SOURCE = "CBPE (NannyML): expected confusion matrix from calibrated probabilities"


def realized_metrics(y_true, probability, predicted) -> dict:
    """Accuracy, F1 (positive class) and Brier score; F1 is None when it is undefined."""
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(probability, dtype=float)
    yhat = np.asarray(predicted, dtype=float)
    if len(y) == 0:
        return {"n": 0, "accuracy": None, "f1": None, "brier": None}
    tp = float(np.sum((yhat == 1) & (y == 1)))
    fp = float(np.sum((yhat == 1) & (y == 0)))
    fn = float(np.sum((yhat == 0) & (y == 1)))
    denominator = 2 * tp + fp + fn
    return {
        "n": int(len(y)),
        "accuracy": float(np.mean(yhat == y)),
        "f1": 2 * tp / denominator if denominator else None,
        "brier": float(np.mean((p - y) ** 2)),
    }


def estimated_metrics(probability, predicted) -> dict:
    """Expected accuracy, F1 and Brier of a calibrated classifier, without labels (CBPE).

    probability: P(class 1) per prediction, predicted: the 0/1 decision, same length.
    Formulas and source: module docstring. F1 is None when no positive is expected.
    """
    p = np.clip(np.asarray(probability, dtype=float), 0.0, 1.0)
    yhat = np.asarray(predicted, dtype=float) == 1
    if len(p) == 0:
        return {"n": 0, "accuracy": None, "f1": None, "brier": None}
    tp, fp = float(p[yhat].sum()), float((1 - p[yhat]).sum())
    fn, tn = float(p[~yhat].sum()), float((1 - p[~yhat]).sum())
    denominator = 2 * tp + fp + fn
    return {
        "n": int(len(p)),
        "accuracy": (tp + tn) / len(p),
        "f1": 2 * tp / denominator if denominator else None,
        "brier": float(np.mean(p * (1 - p))),
    }


def bucket_frequency(frequency: str) -> str:
    """The pandas period of the plot buckets: D, W or M, the smallest holding >= 7 periods.

    frequency: the data set's, a pandas Timedelta string ("1h", "1D"). Hourly -> D, daily -> W.
    """
    period = pd.Timedelta(frequency)
    for bucket, length in (("D", pd.Timedelta("1D")), ("W", pd.Timedelta("7D"))):
        if length / period >= MIN_PERIODS_PER_BUCKET:
            return bucket
    return "M"


def labeled_minimum(configured: int, frequency: str, window_periods: int) -> tuple[int, str]:
    """(minimum of labelled predictions, why) for a window holding window_periods periods.

    The configured minimum when the window can hold twice as many predictions; otherwise
    half the window's periods, but at least MIN_LABELED_FLOOR.
    """
    cap = max(MIN_LABELED_FLOOR, math.ceil(window_periods / 2))
    if configured <= cap:
        return configured, f"configured minimum {configured}"
    return cap, (
        f"a window of {window_periods} periods of {frequency} holds too few predictions for the configured "
        f"minimum {configured}: minimum {cap} (half the window's periods, at least {MIN_LABELED_FLOOR})"
    )


def window_periods(times: pd.Series, frequency: str) -> int:
    """How many periods of the data set's frequency the window spans (first to last time)."""
    times = pd.to_datetime(times).dropna()
    if times.empty:
        return 0
    return int((times.max() - times.min()) / pd.Timedelta(frequency)) + 1


def _period_labels(times: pd.Series, bucket: str) -> pd.Series:
    """The first day of each time's bucket, YYYY-MM-DD."""
    return times.dt.to_period(bucket).dt.start_time.dt.strftime("%Y-%m-%d")


def realized_performance(
    predictions: pd.DataFrame, labeled: pd.DataFrame, time_column: str, label: str, bucket: str = "D"
) -> dict | None:
    """Metrics of predictions whose label has arrived, over the window and per bucket.

    predictions: time column, probability, predicted_label. labeled: time column and label
    (mlops.labels.add_label: the truth for a prediction made at t, known at t + horizon).
    bucket: D | W | M (bucket_frequency). periods: one entry per bucket with labels.
    """
    if predictions.empty:
        return None
    truth = labeled[[time_column, label]].dropna().drop_duplicates(time_column)
    joined = predictions.merge(truth, on=time_column, how="inner")
    overall = realized_metrics(joined[label], joined["probability"], joined["predicted_label"])
    periods = [
        {"period": period, **realized_metrics(group[label], group["probability"], group["predicted_label"])}
        for period, group in joined.groupby(_period_labels(joined[time_column], bucket), sort=True)
    ]
    return {**overall, "n_predictions": int(len(predictions)), "bucket": bucket, "periods": periods}


def estimated_performance(
    predictions: pd.DataFrame, labeled: pd.DataFrame, time_column: str, label: str, bucket: str = "D"
) -> dict | None:
    """CBPE over the window, over its part without truth yet, per bucket, and on the labelled part.

    Same inputs as realized_performance. The window-wide estimate is what the rule compares
    with the holdout; on_labeled is the estimate on exactly the predictions realized_performance
    scored (the gap between the two shows how far the estimate can be trusted here).
    """
    if predictions.empty:
        return None
    truth = labeled[[time_column, label]].dropna().drop_duplicates(time_column)
    has_truth = predictions[time_column].isin(truth[time_column])
    periods = [
        {"period": period, **estimated_metrics(group["probability"], group["predicted_label"])}
        for period, group in predictions.groupby(_period_labels(predictions[time_column], bucket), sort=True)
    ]
    without, with_truth = predictions[~has_truth], predictions[has_truth]
    return {
        **estimated_metrics(predictions["probability"], predictions["predicted_label"]),
        "method": CBPE_SOURCE,
        "unlabeled": estimated_metrics(without["probability"], without["predicted_label"]),
        "on_labeled": estimated_metrics(with_truth["probability"], with_truth["predicted_label"]),
        "bucket": bucket,
        "periods": periods,
    }


def calibration_status(profile: dict) -> dict:
    """Whether the champion's probabilities can be trusted for CBPE, from its holdout calibration."""
    calibration = profile.get("calibration")
    if not calibration:
        return {
            "known": False,
            "calibrated": None,
            "status": "calibration unknown: the reference profile records no holdout calibration",
        }
    ece, tolerance = calibration["ece"], calibration.get("tolerance", 0.05)
    word = "calibrated" if calibration["calibrated"] else "NOT calibrated"
    return {
        "known": True,
        "calibrated": bool(calibration["calibrated"]),
        "ece": ece,
        "tolerance": tolerance,
        "n": calibration.get("n"),
        "status": f"{word} on its holdout: expected calibration error {ece:.3f} "
        f"({'<=' if calibration['calibrated'] else '>'} {tolerance:g}, {calibration.get('n')} rows)",
    }


def holdout_metrics(tags: dict[str, str]) -> dict[str, float]:
    """The champion's holdout metrics from its model version tags: the JSON tag
    HOLDOUT_METRICS_TAG that train sets, else one holdout_<metric> tag per metric."""
    packed = json.loads(tags[HOLDOUT_METRICS_TAG]) if HOLDOUT_METRICS_TAG in tags else {}
    metrics = {}
    for name in PERFORMANCE_METRICS:
        if packed.get(name) is not None:
            metrics[name] = float(packed[name])
        elif f"holdout_{name}" in tags:
            metrics[name] = float(tags[f"holdout_{name}"])
        elif f"holdout_neg_{name}" in tags:
            metrics[name] = -float(tags[f"holdout_neg_{name}"])
    return metrics


def metric_drops(
    kind: str,
    measured: dict | None,
    holdout: dict[str, float],
    margin: float,
    minimum: int,
    metrics: tuple[str, ...] = PERFORMANCE_METRICS,
) -> list[str]:
    """Which of `metrics` of `kind` (realized | estimated) are worse than the holdout by more than margin.

    Empty when there is no measurement or it covers fewer than minimum predictions.
    """
    if not measured or measured["n"] < minimum:
        return []
    drops = []
    for name in metrics:
        now, before = measured.get(name), holdout.get(name)
        if now is None or before is None:
            continue
        drop = (now - before) if name in LOWER_IS_BETTER else (before - now)
        if drop > margin:
            drops.append(f"{kind} {name} {now:.3f} vs holdout {before:.3f} (worse by {drop:.3f} > {margin:g})")
    return drops


def judgement(kind: str, measured: dict | None, minimum: int, why: str) -> str:
    """A sentence for the report and the log: whether `kind` performance could be judged."""
    if not measured:
        return f"{kind} performance: no champion predictions in the window"
    if measured["n"] < minimum:
        noun = "labelled predictions" if kind == "realized" else "predictions"
        return f"{kind} performance cannot be judged: {measured['n']} {noun} < {minimum} ({why})"
    return f"{kind} performance judged on {measured['n']} predictions ({why})"
