"""Drift statistics: recent data against the champion's reference profile (numpy/scipy only).

The reference is the profile of the champion's training data (mlops.profile): for a numeric
feature the row counts in its decile bins, for a categorical one its value frequencies, for
the model's scores the counts in ten fixed bins on [0, 1]. Raw reference rows are not kept,
so every statistic here is one that the stored counts determine exactly:

* PSI (population stability index) over the reference bins (numeric) or the categories.
* Numeric: the two-sample Kolmogorov-Smirnov statistic at the reference bin edges. Both
  empirical CDFs are known exactly at the edges (the reference's from its bin counts), so
  the statistic is the KS statistic of the binned samples: never larger than the KS statistic
  of the raw samples, so the test is conservative (it cannot report drift the raw data would
  not show). The p-value uses scipy's asymptotic two-sample distribution, as
  scipy.stats.ks_2samp(method="asymp") does.
* Categorical (and the scores): a chi-square test of homogeneity on the 2 x k table of
  reference and current counts, plus the Jensen-Shannon distance (base 2, in [0, 1]).
* The change in missing rate.

A feature drifts when its PSI reaches the threshold AND its test's p-value is below the
threshold (a shift large enough to matter and unlikely to be noise: with a million rows any
negligible shift is "significant", with a hundred a large PSI can be noise), or when its
missing rate changes by more than the threshold.

The data-set rule fires when the share of drifted features reaches drifted_feature_share, or
when the realized performance of the champion (its predictions scored against the labels that
arrived later) falls below its holdout performance by more than performance_drop.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd

from mlops.config import DatasetConfig, DriftConfig
from mlops.profile import bin_counts

# Floor for bin proportions in PSI: an empty bin would make the log infinite.
PSI_EPSILON = 1e-4
# Above this effective sample size the KS p-value uses the limiting (Kolmogorov) distribution.
KS_EXACT_MAX_N = 10_000
PERFORMANCE_METRICS = ("accuracy", "f1", "brier")
# For these metrics lower is better; a drop is an increase.
LOWER_IS_BETTER = {"brier"}


@dataclasses.dataclass(frozen=True)
class Thresholds:
    psi: float
    ks_pvalue: float
    chi2_pvalue: float
    missing_rate_change: float
    drifted_feature_share: float
    performance_drop: float
    min_labeled: int

    @classmethod
    def from_config(cls, drift: DriftConfig, overrides: dict[str, Any] | None = None) -> Thresholds:
        """The configured thresholds; overrides (config key names) replace single values."""
        values = {
            "psi": drift.psi_threshold,
            "ks_pvalue": drift.ks_pvalue,
            "chi2_pvalue": drift.chi2_pvalue,
            "missing_rate_change": drift.missing_rate_change,
            "drifted_feature_share": drift.drifted_feature_share,
            "performance_drop": drift.performance_drop,
            "min_labeled": drift.min_labeled_predictions,
        }
        names = {"psi_threshold": "psi", "min_labeled_predictions": "min_labeled"}
        for key, value in (overrides or {}).items():
            if value is None:
                continue
            field = names.get(key, key)
            if field not in values:
                raise ValueError(f"unknown drift threshold {key!r}")
            values[field] = type(values[field])(value)
        return cls(**values)


# --- statistics on counts ------------------------------------------------------------------


def proportions(counts) -> np.ndarray:
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts)


def psi(reference_counts, current_counts, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index: sum over bins of (cur - ref) * ln(cur / ref), proportions floored."""
    ref = np.clip(proportions(reference_counts), epsilon, None)
    cur = np.clip(proportions(current_counts), epsilon, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def ks_from_bins(reference_counts, current_counts) -> tuple[float, float]:
    """Two-sample KS statistic and asymptotic p-value of two samples binned on the same edges.

    The empirical CDFs of both samples at each inner edge are cumulative count shares, exact.
    """
    from scipy import stats

    ref = np.asarray(reference_counts, dtype=float)
    cur = np.asarray(current_counts, dtype=float)
    n, m = ref.sum(), cur.sum()
    if n == 0 or m == 0 or len(ref) < 2:
        return 0.0, 1.0
    # Cumulative shares at the inner edges (the last bin closes both CDFs at 1).
    statistic = float(np.max(np.abs(np.cumsum(ref)[:-1] / n - np.cumsum(cur)[:-1] / m)))
    effective_n = round(n * m / (n + m))
    if effective_n <= KS_EXACT_MAX_N:
        pvalue = stats.kstwo.sf(statistic, effective_n)
    else:
        # kstwo.sf takes seconds for n in the 10^5 (a window of a million rows); the limiting
        # Kolmogorov distribution is within about 1% of it there.
        pvalue = stats.kstwobign.sf(statistic * math.sqrt(effective_n))
    return statistic, float(np.clip(pvalue, 0.0, 1.0))


def chi2_homogeneity(reference_counts, current_counts) -> tuple[float, float]:
    """Chi-square test that two count vectors come from the same distribution (2 x k table)."""
    from scipy import stats

    table = np.vstack([np.asarray(reference_counts, dtype=float), np.asarray(current_counts, dtype=float)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    result = stats.chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def js_distance(reference_counts, current_counts) -> float:
    """Jensen-Shannon distance (base 2: 0 identical, 1 disjoint)."""
    from scipy.spatial.distance import jensenshannon

    ref, cur = proportions(reference_counts), proportions(current_counts)
    if ref.sum() == 0 or cur.sum() == 0:
        return 0.0
    return float(jensenshannon(ref, cur, base=2))


def bin_labels(inner_edges: list[float]) -> list[str]:
    """Readable labels of the bins (-inf, e0], (e0, e1], ..., (e_last, inf)."""
    if not inner_edges:
        return ["all"]
    fmt = "{:.4g}".format
    labels = [f"<= {fmt(inner_edges[0])}"]
    labels += [f"({fmt(a)}, {fmt(b)}]" for a, b in zip(inner_edges[:-1], inner_edges[1:], strict=True)]
    labels.append(f"> {fmt(inner_edges[-1])}")
    return labels


# --- per feature ---------------------------------------------------------------------------


def _missing(reference: dict, total: int, present: int) -> dict:
    current_rate = 1 - present / total if total else 0.0
    return {
        "reference_missing_rate": float(reference.get("missing_rate", 0.0)),
        "current_missing_rate": float(current_rate),
        "missing_rate_change": float(current_rate - reference.get("missing_rate", 0.0)),
    }


def _verdict(result: dict, test_threshold: float, thresholds: Thresholds) -> dict:
    reasons = []
    if result["psi"] is not None and result["psi"] >= thresholds.psi and result["p_value"] < test_threshold:
        reasons.append(
            f"PSI {result['psi']:.3f} >= {thresholds.psi:g} and {result['test']} p-value "
            f"{result['p_value']:.3g} < {test_threshold:g}"
        )
    if abs(result["missing_rate_change"]) > thresholds.missing_rate_change:
        reasons.append(
            f"missing rate {result['reference_missing_rate']:.1%} -> {result['current_missing_rate']:.1%} "
            f"(change > {thresholds.missing_rate_change:.0%})"
        )
    return {**result, "drifted": bool(reasons), "reasons": reasons}


def numeric_feature_drift(name: str, reference: dict, values: pd.Series, thresholds: Thresholds) -> dict:
    numbers = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    result = {
        "feature": name,
        "type": "numeric",
        "n_current": int(len(numbers)),
        **_missing(reference, len(values), len(numbers)),
    }
    edges = reference.get("bin_edges") or []
    ref_counts = reference.get("bin_counts") or []
    if not ref_counts or len(numbers) == 0:
        # Nothing to compare (the feature is entirely missing on one side).
        result.update(psi=None, test="ks", statistic=None, p_value=1.0, distance=None, bins=None)
        return _verdict(result, thresholds.ks_pvalue, thresholds)
    cur_counts = bin_counts(numbers, edges)
    statistic, pvalue = ks_from_bins(ref_counts, cur_counts)
    result.update(
        psi=psi(ref_counts, cur_counts),
        test="ks",
        statistic=statistic,
        p_value=pvalue,
        # Mean shift in reference standard deviations: an effect size people can read.
        distance=_mean_shift(reference, numbers),
        distance_name="mean shift (ref. std)",
        current_mean=float(numbers.mean()),
        reference_mean=reference.get("mean"),
        bins={"labels": bin_labels(edges), "reference": list(map(int, ref_counts)), "current": cur_counts},
    )
    return _verdict(result, thresholds.ks_pvalue, thresholds)


def _mean_shift(reference: dict, numbers: np.ndarray) -> float | None:
    mean, std = reference.get("mean"), reference.get("std")
    if mean is None or not std:
        return None
    return float((numbers.mean() - mean) / std)


def categorical_feature_drift(name: str, reference: dict, values: pd.Series, thresholds: Thresholds) -> dict:
    present = values.dropna().astype(str)
    result = {
        "feature": name,
        "type": "categorical",
        "n_current": int(len(present)),
        **_missing(reference, len(values), len(present)),
    }
    frequencies = reference.get("frequencies") or {}
    n_reference = reference.get("count", 0) * (1 - reference.get("missing_rate", 0.0))
    current = present.value_counts()
    categories = sorted(set(frequencies) | set(current.index))
    if not frequencies or len(present) == 0:
        result.update(psi=None, test="chi2", statistic=None, p_value=1.0, distance=None, bins=None)
        return _verdict(result, thresholds.chi2_pvalue, thresholds)
    # The profile keeps frequencies; counts are frequencies times the reference's present rows.
    ref_counts = np.array([frequencies.get(c, 0.0) * n_reference for c in categories])
    cur_counts = np.array([int(current.get(c, 0)) for c in categories])
    statistic, pvalue = chi2_homogeneity(ref_counts, cur_counts)
    result.update(
        psi=psi(ref_counts, cur_counts),
        test="chi2",
        statistic=statistic,
        p_value=pvalue,
        distance=js_distance(ref_counts, cur_counts),
        distance_name="Jensen-Shannon distance",
        bins={
            "labels": categories,
            "reference": [round(float(c), 3) for c in ref_counts],
            "current": cur_counts.tolist(),
        },
    )
    return _verdict(result, thresholds.chi2_pvalue, thresholds)


def feature_drift(dataset: DatasetConfig, profile: dict, current: pd.DataFrame, thresholds: Thresholds) -> list[dict]:
    """One result per configured feature, in configuration order."""
    results = []
    for name in dataset.features:
        reference = profile["features"].get(name)
        if reference is None:
            raise ValueError(f"reference profile has no feature {name!r}; the champion was trained on other features")
        values = current[name] if name in current else pd.Series([None] * len(current), dtype=object)
        if reference["type"] == "categorical":
            results.append(categorical_feature_drift(name, reference, values, thresholds))
        else:
            results.append(numeric_feature_drift(name, reference, values, thresholds))
    return results


# --- model scores and realized performance ------------------------------------------------


def score_drift(reference_scores: dict | None, probabilities) -> dict | None:
    """Drift of the champion's scores: PSI and chi-square on the profile's fixed score bins."""
    probabilities = np.asarray(probabilities, dtype=float)
    if not reference_scores or len(probabilities) == 0:
        return None
    edges = reference_scores["bin_edges"]
    ref_counts = reference_scores["bin_counts"]
    cur_counts = np.histogram(np.clip(probabilities, 0.0, 1.0), bins=edges)[0]
    statistic, pvalue = chi2_homogeneity(ref_counts, cur_counts)
    return {
        "psi": psi(ref_counts, cur_counts),
        "test": "chi2",
        "statistic": statistic,
        "p_value": pvalue,
        "n_current": int(len(probabilities)),
        "reference_mean": reference_scores.get("mean"),
        "current_mean": float(probabilities.mean()),
        "bins": {
            "labels": [f"[{a:.1f}, {b:.1f})" for a, b in zip(edges[:-1], edges[1:], strict=True)],
            "reference": list(map(int, ref_counts)),
            "current": cur_counts.astype(int).tolist(),
        },
    }


def classification_metrics(y_true, probability, predicted) -> dict:
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


def realized_performance(predictions: pd.DataFrame, labeled: pd.DataFrame, time_column: str, label: str) -> dict | None:
    """Metrics of predictions whose label has arrived, over the window and per day.

    predictions: time column, probability, predicted_label. labeled: time column and label
    (mlops.labels.add_label: the truth for a prediction made at t, known at t + horizon).
    """
    if predictions.empty:
        return None
    truth = labeled[[time_column, label]].dropna().drop_duplicates(time_column)
    joined = predictions.merge(truth, on=time_column, how="inner")
    overall = classification_metrics(joined[label], joined["probability"], joined["predicted_label"])
    daily = []
    for day, group in joined.groupby(joined[time_column].dt.strftime("%Y-%m-%d"), sort=True):
        daily.append(
            {"day": day, **classification_metrics(group[label], group["probability"], group["predicted_label"])}
        )
    return {**overall, "n_predictions": int(len(predictions)), "daily": daily}


def holdout_metrics(tags: dict[str, str]) -> dict[str, float]:
    """The champion's holdout metrics from its model version tags (holdout_<metric>)."""
    metrics = {}
    for name in PERFORMANCE_METRICS:
        if f"holdout_{name}" in tags:
            metrics[name] = float(tags[f"holdout_{name}"])
        elif f"holdout_neg_{name}" in tags:
            metrics[name] = -float(tags[f"holdout_neg_{name}"])
    return metrics


def performance_drops(realized: dict | None, holdout: dict[str, float], thresholds: Thresholds) -> list[str]:
    """Which metrics fell below the holdout by more than the margin (empty: none, or too few labels)."""
    if not realized or realized["n"] < thresholds.min_labeled:
        return []
    drops = []
    for name in PERFORMANCE_METRICS:
        now, before = realized.get(name), holdout.get(name)
        if now is None or before is None:
            continue
        drop = (now - before) if name in LOWER_IS_BETTER else (before - now)
        if drop > thresholds.performance_drop:
            drops.append(
                f"realized {name} {now:.3f} vs holdout {before:.3f} (worse by {drop:.3f} > {thresholds.performance_drop:g})"
            )
    return drops


# --- the data-set rule ---------------------------------------------------------------------


def dataset_rule(features: list[dict], drops: list[str], thresholds: Thresholds) -> dict:
    drifted = [f["feature"] for f in features if f["drifted"]]
    share = len(drifted) / len(features) if features else 0.0
    reasons = []
    if features and share >= thresholds.drifted_feature_share:
        reasons.append(
            f"{len(drifted)} of {len(features)} features drifted ({share:.0%} >= {thresholds.drifted_feature_share:.0%}): "
            + ", ".join(drifted)
        )
    reasons += drops
    return {
        "fired": bool(reasons),
        "drifted_features": drifted,
        "drifted_share": share,
        "performance_dropped": bool(drops),
        "reason": "; ".join(reasons) if reasons else "no rule fired",
    }


def compute_drift(
    dataset: DatasetConfig,
    profile: dict,
    current: pd.DataFrame,
    thresholds: Thresholds,
    champion_predictions: pd.DataFrame | None = None,
    challenger_predictions: pd.DataFrame | None = None,
    holdout: dict[str, float] | None = None,
) -> dict:
    """Everything drift_check measures, as one JSON-able dict (see the module docstring).

    current: observations of the window (configured columns). *_predictions: time column
    (datetime64), probability, predicted_label.
    """
    from mlops.labels import add_label

    features = feature_drift(dataset, profile, current, thresholds)
    time_col, label = dataset.time_column, dataset.label.name
    labeled = add_label(current, dataset)
    labeled[time_col] = pd.to_datetime(labeled[time_col])
    champion = champion_predictions if champion_predictions is not None else pd.DataFrame()
    challenger = challenger_predictions if challenger_predictions is not None else pd.DataFrame()
    realized = realized_performance(champion, labeled, time_col, label) if not champion.empty else None
    holdout = holdout or {}
    drops = performance_drops(realized, holdout, thresholds)
    return {
        "n_current": int(len(current)),
        "n_reference": int(profile.get("n_rows", 0)),
        "features": features,
        "scores": score_drift(profile.get("scores"), champion["probability"]) if not champion.empty else None,
        "performance": {
            "champion": realized,
            "challenger": realized_performance(challenger, labeled, time_col, label) if not challenger.empty else None,
            "holdout": holdout,
            "drops": drops,
        },
        "thresholds": dataclasses.asdict(thresholds),
        "rule": dataset_rule(features, drops, thresholds),
    }


def json_safe(value):
    """Replace NaN/inf (not valid JSON) with None, recursively."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return json_safe(value.item())
    return value
