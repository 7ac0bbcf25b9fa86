"""Drift statistics: recent data against the champion's reference profile (numpy/scipy only).

The reference is the profile of the champion's training data (mlops.monitoring.profile): for a numeric
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

Autocorrelated rows: the p-values of both tests assume independent rows, which the hours of
a month of weather are not. With drift.autocorrelation on, both sample sizes are divided by
the feature's design effect tau stored in the reference profile (its integrated
autocorrelation time, mlops.monitoring.autocorrelation): KS uses the effective sizes n / tau and
m / tau, the chi-square statistic is divided by tau (Rao & Scott 1981's first-order
correction). The statistics themselves (D, PSI) are unchanged. A profile without the
estimate (made before it existed, or without a time column) counts rows as independent.

A feature drifts when its PSI reaches the threshold AND its test's p-value is below the
threshold (a shift large enough to matter and unlikely to be noise: with a million rows any
negligible shift is "significant", with a hundred a large PSI can be noise), or when its
missing rate changes by more than the threshold. A drifted numeric feature is severe when its
KS distance reaches severe_ks.

Seasons: every statistic is computed twice, against the whole reference (raw) and against
the reference of the window's time of year (season_weighted: the reference's per-month counts
mixed in the window's own proportions of months or quarters); the verdict uses the latter
while seasonal_adjustment is on.

The data-set rule fires when the share of drifted features reaches drifted_feature_share, when
one feature's shift is severe (a single broken sensor), or when the realized performance of the champion (its predictions scored against the labels that
arrived later) or its estimated performance (mlops.monitoring.performance, from its probabilities) falls
below its holdout performance by more than performance_drop.

The window's counts come from its rows (feature_drift) or from merged batch profiles
(feature_drift_from_profile, mlops.monitoring.batch_profile), with the same statistics.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd

from mlops.config import DatasetConfig, DriftConfig
from mlops.monitoring.performance import (  # noqa: F401 (realized_metrics, holdout_metrics: this module's API)
    PERFORMANCE_METRICS,
    bucket_frequency,
    calibration_status,
    estimated_performance,
    holdout_metrics,
    judgement,
    labeled_minimum,
    metric_drops,
    realized_metrics,
    realized_performance,
    window_periods,
)
from mlops.monitoring.profile import bin_counts

# Floor for bin proportions in PSI: an empty bin would make the log infinite.
PSI_EPSILON = 1e-4
# Above this effective sample size the KS p-value uses the limiting (Kolmogorov) distribution.
KS_EXACT_MAX_N = 10_000


@dataclasses.dataclass(frozen=True)
class Thresholds:
    psi: float
    ks_pvalue: float
    chi2_pvalue: float
    missing_rate_change: float
    drifted_feature_share: float
    performance_drop: float
    min_labeled: int
    season_key: str = "month"
    seasonal_adjustment: bool = True
    min_stratum_rows: int = 100
    season_neighbours: bool = True
    severe_ks: float | None = None
    performance_metrics: tuple[str, ...] = ("accuracy", "f1", "brier")
    autocorrelation: bool = True

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
            "season_key": drift.season_key,
            "seasonal_adjustment": drift.seasonal_adjustment,
            "min_stratum_rows": drift.min_stratum_rows,
            "season_neighbours": drift.season_neighbours,
            "severe_ks": drift.severe_ks,
            "performance_metrics": tuple(drift.performance_metrics),
            "autocorrelation": drift.autocorrelation,
        }
        names = {"psi_threshold": "psi", "min_labeled_predictions": "min_labeled"}
        for key, value in (overrides or {}).items():
            if value is None:
                continue
            field = names.get(key, key)
            if field not in values:
                raise ValueError(f"unknown drift threshold {key!r}")
            values[field] = _coerce(field, values[field], value)
        return cls(**values)


def _coerce(field: str, current, value):
    """An override in the type of the configured value (bool from true/false, a known season key)."""
    if isinstance(current, bool):
        if isinstance(value, str):
            if value.lower() not in ("true", "false"):
                raise ValueError(f"drift {field}: {value!r} is not true or false")
            return value.lower() == "true"
        return bool(value)
    if field == "severe_ks":
        # "none" (or null) switches the single-feature rule off.
        return None if str(value).lower() in ("none", "null") else float(value)
    if field == "season_key" and value not in ("month", "quarter", "none"):
        raise ValueError(f"drift season_key: {value!r} is not month, quarter or none")
    return type(current)(value)


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


def effective_size(n: float, design_effect: float = 1.0) -> float:
    """The number of independent rows n autocorrelated rows are worth: n / design_effect.

    design_effect (tau = n / n_eff, mlops.monitoring.autocorrelation) is clipped to [1, n], so
    the result lies in [1, n] for n >= 1 (n itself below 1). NaN or None counts as 1.
    """
    n = float(n)
    if n < 1 or design_effect is None or not math.isfinite(design_effect):
        return n
    return n / min(max(float(design_effect), 1.0), n)


def ks_from_bins(reference_counts, current_counts, design_effect: float = 1.0) -> tuple[float, float]:
    """Two-sample KS statistic and asymptotic p-value of two samples binned on the same edges.

    The empirical CDFs of both samples at each inner edge are cumulative count shares, exact.
    design_effect: as in ks_against_expected.
    """
    ref = np.asarray(reference_counts, dtype=float)
    return ks_against_expected(proportions(ref), float(ref.sum()), current_counts, design_effect)


def ks_against_expected(
    expected_shares, reference_n: float, current_counts, design_effect: float = 1.0
) -> tuple[float, float]:
    """KS statistic of binned current counts against expected bin shares, and its p-value.

    expected_shares: the reference's share per bin (summing to 1), from reference_n rows (for
    a season-weighted mixture, its effective size). The statistic is the largest gap between
    the two CDFs at the inner edges; the p-value is the two-sample one for sizes reference_n
    and the current count, as scipy.stats.ks_2samp(method="asymp") computes it (exact
    Kolmogorov-Smirnov distribution kstwo at the effective size n*m/(n+m), the limiting
    kstwobign above KS_EXACT_MAX_N). design_effect: both sizes are divided by it first
    (effective_size; autocorrelated rows, module docstring); 1 = independent rows, scipy's test.
    """
    from scipy import stats

    ref = np.asarray(expected_shares, dtype=float)
    cur = np.asarray(current_counts, dtype=float)
    n, m = float(reference_n), cur.sum()
    if n <= 0 or m == 0 or len(ref) < 2 or ref.sum() == 0:
        return 0.0, 1.0
    # Cumulative shares at the inner edges (the last bin closes both CDFs at 1).
    statistic = float(np.max(np.abs(np.cumsum(ref)[:-1] / ref.sum() - np.cumsum(cur)[:-1] / m)))
    n, m = effective_size(n, design_effect), effective_size(m, design_effect)
    effective_n = round(n * m / (n + m))
    if effective_n < 1:
        return statistic, 1.0
    if effective_n <= KS_EXACT_MAX_N:
        pvalue = stats.kstwo.sf(statistic, effective_n)
    else:
        # kstwo.sf takes seconds for n in the 10^5 (a window of a million rows); the limiting
        # Kolmogorov distribution is within about 1% of it there.
        pvalue = stats.kstwobign.sf(statistic * math.sqrt(effective_n))
    return statistic, float(np.clip(pvalue, 0.0, 1.0))


def chi2_homogeneity(reference_counts, current_counts, design_effect: float = 1.0) -> tuple[float, float]:
    """Chi-square test that two count vectors come from the same distribution (2 x k table).

    design_effect: the Pearson statistic is divided by it before the p-value (Rao & Scott's
    first-order correction for a sample whose rows are not independent: Rao & Scott 1981,
    JASA 76, "The analysis of categorical data from complex sample surveys"); clipped to at
    least 1. The returned statistic is the corrected one.
    """
    from scipy import stats

    table = np.vstack([np.asarray(reference_counts, dtype=float), np.asarray(current_counts, dtype=float)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    result = stats.chi2_contingency(table, correction=False)
    if design_effect is None or not math.isfinite(design_effect) or design_effect <= 1:
        return float(result.statistic), float(result.pvalue)
    statistic = float(result.statistic) / float(design_effect)
    return statistic, float(stats.chi2.sf(statistic, result.dof))


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


# --- the season-weighted reference ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Season:
    """How a window is matched with the reference: its strata and their shares of its rows.

    key: month | quarter | none. window_shares: {stratum: share of the window's rows}.
    reference_rows: {stratum: reference rows} (summed from the profile's months); empty
    when the profile has no strata. note: why the comparison falls back, if it does.
    """

    key: str
    window_shares: dict[str, float]
    reference_rows: dict[str, int]
    min_rows: int
    note: str | None = None
    neighbours: bool = True


def stratum_of_month(month: str | int, key: str) -> str:
    """The stratum label of a calendar month (1..12) under a season key."""
    if key == "month":
        return str(int(month))
    if key == "quarter":
        return f"Q{(int(month) - 1) // 3 + 1}"
    return "all"


def neighbour_strata(stratum: str, key: str) -> list[str]:
    """The strata just before and after (circular): month 12 -> 11, 1; quarter Q1 -> Q4, Q2."""
    if stratum == "all":
        return []
    if key == "month":
        m = int(stratum)
        return [str((m - 2) % 12 + 1), str(m % 12 + 1)]
    if key == "quarter":
        q = int(stratum[1:])
        return [f"Q{(q - 2) % 4 + 1}", f"Q{q % 4 + 1}"]
    return []


def by_stratum(by_month: dict[str, Any], key: str) -> dict[str, np.ndarray]:
    """Sum per-month count vectors (the profile's strata) into the season key's strata."""
    out: dict[str, np.ndarray] = {}
    for month, counts in by_month.items():
        stratum = stratum_of_month(month, key)
        out[stratum] = out.get(stratum, 0) + np.asarray(counts, dtype=float)
    return out


def window_season(profile: dict, times: pd.Series | None, key: str, min_rows: int, neighbours: bool = True) -> Season:
    """The window's strata mix and the reference rows per stratum (see Season)."""
    if times is None or len(times) == 0:
        return season_from_months(profile, {}, key, min_rows, neighbours)
    months = pd.to_datetime(times).dt.month.dropna().astype(int).value_counts()
    return season_from_months(profile, {str(m): int(n) for m, n in months.items()}, key, min_rows, neighbours)


def season_from_months(
    profile: dict, month_rows: dict[str, int], key: str, min_rows: int, neighbours: bool = True
) -> Season:
    """window_season from the window's rows per calendar month ("1".."12"; a merged batch profile)."""
    if key == "none":
        return Season(key, {"all": 1.0}, {}, min_rows, "season_key none: the whole reference")
    total = sum(month_rows.values())
    if not total:
        return Season(key, {"all": 1.0}, {}, min_rows, "the window has no times: the whole reference")
    shares: dict[str, float] = {}
    for month, n in month_rows.items():
        stratum = stratum_of_month(month, key)
        shares[stratum] = shares.get(stratum, 0.0) + n / total
    window_shares = dict(sorted(shares.items()))
    strata = profile.get("strata")
    if not strata:
        note = "the reference profile has no calendar strata (built before season-aware profiles): the whole reference"
        return Season(key, window_shares, {}, min_rows, note)
    rows = by_stratum({m: [n] for m, n in strata["rows"].items()}, key)
    return Season(key, window_shares, {s: int(np.sum(v)) for s, v in rows.items()}, min_rows, None, neighbours)


def season_weighted(strata_counts: dict[str, np.ndarray], whole_counts, season: Season) -> dict:
    """Expected proportions of the window under "same time of year, nothing else changed".

    expected = sum over the window's strata s of window_share(s) * reference_share(s), the
    reference share of s being its bin (or category) proportions. A stratum with fewer than
    season.min_rows reference values uses its two neighbours together (the month before and
    after; listed in widened) when season.neighbours and they have enough, else the whole
    reference (listed in fallback).
    This is a post-stratified (direct standardisation) reference: the window's strata mix
    applied to the reference's per-stratum distributions (Cochran, "Sampling Techniques",
    3rd ed. 1977, sec. 5A.9 post-stratification).
    effective_n: the size of a simple sample with the same variance of the expected shares,
    1 / sum_s(w_s^2 / n_s) (Kish 1965, "Survey Sampling", design effect), with every fallback
    stratum counted once as the whole reference (they reuse the same rows).
    """
    whole = np.asarray(whole_counts, dtype=float)
    expected = np.zeros_like(whole)
    inverse_n, fallback_weight, fallback, widened = 0.0, 0.0, [], {}
    for stratum, weight in season.window_shares.items():
        counts = strata_counts.get(stratum)
        if (counts is None or counts.sum() < season.min_rows) and season.neighbours:
            near = [n for n in neighbour_strata(stratum, season.key) if n in strata_counts]
            combined = sum((strata_counts[n] for n in near), np.zeros_like(whole))
            if combined.sum() >= season.min_rows:
                counts, widened[stratum] = combined, near
        if counts is None or counts.sum() < season.min_rows:
            fallback.append(stratum)
            fallback_weight += weight
            expected += weight * proportions(whole)
            continue
        expected += weight * proportions(counts)
        inverse_n += weight**2 / counts.sum()
    if fallback_weight and whole.sum():
        inverse_n += fallback_weight**2 / whole.sum()
    effective_n = 1 / inverse_n if inverse_n else 0.0
    return {"expected": expected, "effective_n": float(effective_n), "fallback": fallback, "widened": widened}


# --- per feature ---------------------------------------------------------------------------


def design_effect(reference: dict, thresholds: Thresholds) -> float:
    """The factor both tests divide their sample sizes by: the reference profile's estimate of
    the feature's autocorrelation (mlops.monitoring.profile, "autocorrelation"), at least 1.

    1 (independent rows) when thresholds.autocorrelation is off or the profile has no
    estimate (an old profile, a reference without a time column, too few consecutive rows).
    """
    if not thresholds.autocorrelation:
        return 1.0
    value = (reference.get("autocorrelation") or {}).get("design_effect")
    return max(float(value), 1.0) if value is not None and math.isfinite(value) else 1.0


def _missing_stats(reference_rate: float, total: int, present: int) -> dict:
    current_rate = 1 - present / total if total else 0.0
    return {
        "reference_missing_rate": float(reference_rate),
        "current_missing_rate": float(current_rate),
        "missing_rate_change": float(current_rate - reference_rate),
    }


def _reasons(stats: dict, test: str, test_threshold: float, thresholds: Thresholds) -> list[str]:
    reasons = []
    if stats["psi"] is not None and stats["psi"] >= thresholds.psi and stats["p_value"] < test_threshold:
        reasons.append(
            f"PSI {stats['psi']:.3f} >= {thresholds.psi:g} and {test} p-value {stats['p_value']:.3g} < {test_threshold:g}"
        )
    if abs(stats["missing_rate_change"]) > thresholds.missing_rate_change:
        reasons.append(
            f"missing rate {stats['reference_missing_rate']:.1%} -> {stats['current_missing_rate']:.1%} "
            f"(change > {thresholds.missing_rate_change:.0%})"
        )
    return reasons


def _expected_missing_rate(reference: dict, season: Season) -> tuple[float, list[str]]:
    """The reference's missing rate at the window's time of year (season_weighted on 2 cells)."""
    rate = float(reference.get("missing_rate", 0.0))
    missing = reference.get("strata_missing")
    if not missing or not season.reference_rows:
        return rate, list(season.window_shares)
    strata = {
        s: np.array([m, season.reference_rows[s] - m])
        for s, m in ((s, float(np.sum(v))) for s, v in by_stratum(missing, season.key).items())
    }
    total = reference.get("count", 0)
    whole = [rate * total, (1 - rate) * total]
    weighted = season_weighted(strata, whole, season)
    return float(weighted["expected"][0]) if total else rate, weighted["fallback"]


def _judge(result: dict, raw: dict, seasonal: dict, test_threshold: float, thresholds: Thresholds) -> dict:
    """Verdicts on both comparisons; the top-level fields are those of the one the rule uses."""
    for stats in (raw, seasonal):
        stats["reasons"] = _reasons(stats, result["test"], test_threshold, thresholds)
        stats["drifted"] = bool(stats["reasons"])
    used = seasonal if thresholds.seasonal_adjustment else raw
    basis = "season-adjusted" if thresholds.seasonal_adjustment else "raw"
    keys = ("psi", "statistic", "p_value", "reference_missing_rate", "missing_rate_change", "drifted", "reasons")
    return {**result, **{k: used[k] for k in keys}, "basis": basis, "raw": raw, "seasonal": seasonal}


def numeric_feature_drift(
    name: str, reference: dict, values: pd.Series, thresholds: Thresholds, season: Season | None = None
) -> dict:
    """PSI, binned KS and missing-rate change of one numeric feature, raw and season-adjusted.

    raw: against the whole reference; seasonal: against season_weighted(...) of the
    reference's per-month bin counts (equal to raw when there is no season or no strata).
    """
    numbers = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    counts = bin_counts(numbers, reference.get("bin_edges") or []) if len(numbers) else None
    mean = float(numbers.mean()) if len(numbers) else None
    return numeric_drift_from_counts(name, reference, len(values), len(numbers), mean, counts, thresholds, season)


def numeric_drift_from_counts(
    name: str,
    reference: dict,
    total: int,
    present: int,
    mean: float | None,
    current_counts,
    thresholds: Thresholds,
    season: Season | None = None,
) -> dict:
    """numeric_feature_drift from the window's counts on the reference's bins (a merged profile).

    total: rows of the window, present: rows with a value, mean: of the present values,
    current_counts: per reference bin (len(bin_edges) + 1), None when present is 0.
    """
    season = season or Season("none", {"all": 1.0}, {}, thresholds.min_stratum_rows)
    result = {"feature": name, "type": "numeric", "n_current": int(present), "test": "ks", "distance": None}
    result["current_missing_rate"] = _missing_stats(0.0, total, present)["current_missing_rate"]
    raw = _missing_stats(reference.get("missing_rate", 0.0), total, present)
    expected_missing, _ = _expected_missing_rate(reference, season)
    seasonal = _missing_stats(expected_missing, total, present)
    edges = reference.get("bin_edges") or []
    ref_counts = np.asarray(reference.get("bin_counts") or [], dtype=float)
    if not len(ref_counts) or present == 0:
        # Nothing to compare (the feature is entirely missing on one side).
        for stats in (raw, seasonal):
            stats.update(psi=None, statistic=None, p_value=1.0)
        return _judge({**result, "bins": None}, raw, seasonal, thresholds.ks_pvalue, thresholds)
    cur_counts = np.asarray(current_counts, dtype=float)
    deff = design_effect(reference, thresholds)
    statistic, pvalue = ks_from_bins(ref_counts, cur_counts, deff)
    raw.update(psi=psi(ref_counts, cur_counts), statistic=statistic, p_value=pvalue)
    strata = by_stratum(reference.get("strata_bin_counts") or {}, season.key) if season.reference_rows else {}
    weighted = season_weighted(strata, ref_counts, season)
    statistic, pvalue = ks_against_expected(weighted["expected"], weighted["effective_n"], cur_counts, deff)
    _set_seasonal(seasonal, weighted, cur_counts, statistic, pvalue)
    result.update(
        # Mean shift in reference standard deviations: an effect size people can read.
        distance=_mean_shift(reference, mean),
        distance_name="mean shift (ref. std)",
        current_mean=mean,
        reference_mean=reference.get("mean"),
        design_effect=deff,
        effective_n_current=effective_size(present, deff),
        bins={
            "labels": bin_labels(edges),
            "reference": ref_counts.astype(int).tolist(),
            "seasonal_reference": weighted["expected"].tolist(),
            "current": cur_counts.astype(int).tolist(),
        },
    )
    return _judge(result, raw, seasonal, thresholds.ks_pvalue, thresholds)


def _set_seasonal(seasonal: dict, weighted: dict, cur_counts, statistic: float, p_value: float) -> None:
    """Fill the season-adjusted stats: PSI against the weighted reference, the test, the strata used."""
    seasonal.update(
        psi=psi(weighted["expected"], cur_counts),
        statistic=statistic,
        p_value=p_value,
        fallback_strata=weighted["fallback"],
        widened_strata=weighted["widened"],
        effective_reference_n=weighted["effective_n"],
    )


def _mean_shift(reference: dict, current_mean: float | None) -> float | None:
    mean, std = reference.get("mean"), reference.get("std")
    if mean is None or not std or current_mean is None:
        return None
    return float((current_mean - mean) / std)


def categorical_feature_drift(
    name: str, reference: dict, values: pd.Series, thresholds: Thresholds, season: Season | None = None
) -> dict:
    """PSI, chi-square and missing-rate change of one categorical feature, raw and season-adjusted."""
    counts = {str(k): int(v) for k, v in values.dropna().astype(str).value_counts().items()}
    return categorical_drift_from_counts(name, reference, len(values), counts, thresholds, season)


def categorical_drift_from_counts(
    name: str,
    reference: dict,
    total: int,
    current: dict[str, int],
    thresholds: Thresholds,
    season: Season | None = None,
) -> dict:
    """categorical_feature_drift from the window's category counts (a merged profile); total: its rows."""
    season = season or Season("none", {"all": 1.0}, {}, thresholds.min_stratum_rows)
    present = sum(current.values())
    result = {"feature": name, "type": "categorical", "n_current": int(present), "test": "chi2", "distance": None}
    result["current_missing_rate"] = _missing_stats(0.0, total, present)["current_missing_rate"]
    raw = _missing_stats(reference.get("missing_rate", 0.0), total, present)
    seasonal = _missing_stats(_expected_missing_rate(reference, season)[0], total, present)
    frequencies = reference.get("frequencies") or {}
    n_reference = reference.get("count", 0) * (1 - reference.get("missing_rate", 0.0))
    categories = sorted(set(frequencies) | set(current))
    if not frequencies or present == 0:
        for stats in (raw, seasonal):
            stats.update(psi=None, statistic=None, p_value=1.0)
        return _judge({**result, "bins": None}, raw, seasonal, thresholds.chi2_pvalue, thresholds)
    # The profile keeps frequencies; counts are frequencies times the reference's present rows.
    ref_counts = np.array([frequencies.get(c, 0.0) * n_reference for c in categories])
    cur_counts = np.array([int(current.get(c, 0)) for c in categories])
    deff = design_effect(reference, thresholds)
    statistic, pvalue = chi2_homogeneity(ref_counts, cur_counts, deff)
    raw.update(psi=psi(ref_counts, cur_counts), statistic=statistic, p_value=pvalue)
    by_month = {m: [c.get(k, 0) for k in categories] for m, c in (reference.get("strata_counts") or {}).items()}
    strata = by_stratum(by_month, season.key) if season.reference_rows else {}
    weighted = season_weighted(strata, ref_counts, season)
    # The season-weighted reference as pseudo-counts of its effective size.
    statistic, pvalue = chi2_homogeneity(weighted["expected"] * weighted["effective_n"], cur_counts, deff)
    _set_seasonal(seasonal, weighted, cur_counts, statistic, pvalue)
    result.update(
        distance=js_distance(ref_counts, cur_counts),
        distance_name="Jensen-Shannon distance",
        design_effect=deff,
        effective_n_current=effective_size(present, deff),
        bins={
            "labels": categories,
            "reference": [round(float(c), 3) for c in ref_counts],
            "seasonal_reference": weighted["expected"].tolist(),
            "current": cur_counts.tolist(),
        },
    )
    return _judge(result, raw, seasonal, thresholds.chi2_pvalue, thresholds)


def feature_drift(
    dataset: DatasetConfig, profile: dict, current: pd.DataFrame, thresholds: Thresholds, season: Season | None = None
) -> list[dict]:
    """One result per configured feature, in configuration order.

    season: the window's strata (window_season); default: from current's time column and
    the thresholds' season key.
    """
    if season is None:
        times = current.get(dataset.time_column)
        season = window_season(
            profile, times, thresholds.season_key, thresholds.min_stratum_rows, thresholds.season_neighbours
        )
    results = []
    for name in dataset.features:
        reference = profile["features"].get(name)
        if reference is None:
            raise ValueError(f"reference profile has no feature {name!r}; the champion was trained on other features")
        values = current[name] if name in current else pd.Series([None] * len(current), dtype=object)
        if reference["type"] == "categorical":
            results.append(categorical_feature_drift(name, reference, values, thresholds, season))
        else:
            results.append(numeric_feature_drift(name, reference, values, thresholds, season))
    return results


def feature_drift_from_profile(
    dataset: DatasetConfig, profile: dict, merged: dict, thresholds: Thresholds, rows: pd.DataFrame | None = None
) -> tuple[list[dict], Season]:
    """feature_drift from a merged batch profile of the window (mlops.monitoring.batch_profile), no rows read.

    Every result also has ks_error_bound: how far its KS statistic can be from the one on rows,
    and source: "batch profiles" or "rows". A feature the batch profiles cannot hold (no fixed
    grid: profile_gaps) is measured on its column in rows; ValueError naming it when rows lack it.
    """
    from mlops.monitoring.batch_profile import rebin, window_totals

    totals = window_totals(merged)
    season = season_from_months(
        profile, totals["months"], thresholds.season_key, thresholds.min_stratum_rows, thresholds.season_neighbours
    )
    results = []
    for name in dataset.features:
        reference, grid = profile["features"].get(name), merged["grids"].get(name)
        if reference is None:
            raise ValueError(f"reference profile has no feature {name!r}; the champion was trained on other features")
        if grid is None:
            if rows is None or name not in rows:
                raise ValueError(f"feature {name!r} has no fixed grid (no range or allowed values): read its rows")
            judge = categorical_feature_drift if reference["type"] == "categorical" else numeric_feature_drift
            results.append({**judge(name, reference, rows[name], thresholds, season), "source": "rows"})
            continue
        feature = totals["features"][name]
        present = feature["present"]
        if reference["type"] == "categorical":
            result = categorical_drift_from_counts(
                name, reference, totals["rows"], feature["counts"], thresholds, season
            )
            results.append({**result, "ks_error_bound": 0.0, "source": "batch profiles"})
            continue
        edges = reference.get("bin_edges") or []
        counts, bound = rebin(feature, grid, edges)
        mean = feature["sum"] / present if present else None
        result = numeric_drift_from_counts(
            name, reference, totals["rows"], present, mean, counts if present else None, thresholds, season
        )
        results.append({**result, "ks_error_bound": bound, "source": "batch profiles"})
    return results, season


def season_summary(season: Season, features: list[dict], thresholds: Thresholds) -> dict:
    """What the report says about the season matching: strata, coverage, fallbacks."""
    fallback = sorted({s for f in features for s in (f.get("seasonal") or {}).get("fallback_strata", [])})
    widened = {s: n for f in features for s, n in (f.get("seasonal") or {}).get("widened_strata", {}).items()}
    notes = [season.note] if season.note else []
    for stratum, near in sorted(widened.items()):
        notes.append(
            f"reference has fewer than {season.min_rows} rows for {season.key} {stratum}: "
            f"compared with {season.key} {' and '.join(near)} there"
        )
    if fallback and not season.note:
        notes.append(
            f"reference has fewer than {season.min_rows} rows for {season.key} {', '.join(fallback)}: "
            "compared with the whole reference there"
        )
    return {
        "key": season.key,
        "adjusted": thresholds.seasonal_adjustment,
        "window_shares": season.window_shares,
        "reference_rows": season.reference_rows,
        "fallback_strata": fallback,
        "widened_strata": widened,
        "notes": notes,
    }


def autocorrelation_summary(profile: dict, features: list[dict], thresholds: Thresholds) -> dict:
    """What the report says about autocorrelated rows: the design effect each test used, and why
    a feature's rows counted as independent (switched off, or no estimate in the profile)."""
    notes = []
    if not thresholds.autocorrelation:
        notes.append("drift.autocorrelation is off: every row counts as an independent sample")
    else:
        missing = [
            f["feature"]
            for f in features
            if (profile["features"].get(f["feature"], {}).get("autocorrelation") or {}).get("design_effect") is None
        ]
        if missing:
            notes.append(
                "the reference profile has no autocorrelation estimate for "
                + ", ".join(missing)
                + " (made before it existed, without a time column, or too few consecutive rows): "
                "their rows count as independent"
            )
    return {
        "adjusted": thresholds.autocorrelation,
        "design_effects": {f["feature"]: f.get("design_effect", 1.0) for f in features},
        "notes": notes,
    }


# --- model scores -----------------------------------------------------------------------------


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


# --- the data-set rule ---------------------------------------------------------------------


def severe_features(features: list[dict], thresholds: Thresholds) -> list[str]:
    """Numeric features that drifted with a KS distance of at least thresholds.severe_ks.

    The KS statistic D (on the basis the rule uses, season-adjusted by default) is the largest
    share of the window's rows that moved across one of the reference's quantiles: an effect
    size in [0, 1], unlike PSI, which grows without bound and with the number of bins.
    None when the threshold is off.
    """
    if thresholds.severe_ks is None:
        return []
    return [
        f["feature"]
        for f in features
        if f["drifted"] and f.get("test") == "ks" and (f.get("statistic") or 0.0) >= thresholds.severe_ks
    ]


def dataset_rule(features: list[dict], drops: list[str], thresholds: Thresholds) -> dict:
    """Whether the window warrants a retrain, and why (the reasons joined in one sentence).

    Fires when the share of drifted features reaches drifted_feature_share, when a single
    feature's shift is severe (severe_features: one broken sensor among seven features can
    never reach the share), or when a performance drop is in drops.
    """
    drifted = [f["feature"] for f in features if f["drifted"]]
    severe = severe_features(features, thresholds)
    share = len(drifted) / len(features) if features else 0.0
    reasons = []
    if features and share >= thresholds.drifted_feature_share:
        reasons.append(
            f"{len(drifted)} of {len(features)} features drifted ({share:.0%} >= {thresholds.drifted_feature_share:.0%}): "
            + ", ".join(drifted)
        )
    if severe:
        reasons.append(f"severe shift (KS distance >= {thresholds.severe_ks:g}) in {', '.join(severe)}")
    reasons += drops
    return {
        "fired": bool(reasons),
        "drifted_features": drifted,
        "severe_features": severe,
        "drifted_share": share,
        "performance_dropped": bool(drops),
        "reason": "; ".join(reasons) if reasons else "no rule fired",
    }


def champion_performance(
    dataset: DatasetConfig,
    labeled: pd.DataFrame,
    champion: pd.DataFrame,
    challenger: pd.DataFrame,
    holdout: dict[str, float],
    thresholds: Thresholds,
    calibration: dict,
) -> dict:
    """Realized and estimated performance of the champion (and the challenger's realized), the
    minimum that applies at the data set's frequency, and which of them dropped (mlops.monitoring.performance).

    The estimate counts in the rule unless the champion is known to be miscalibrated.
    """
    time_col, label = dataset.time_column, dataset.label.name
    bucket = bucket_frequency(dataset.frequency)
    periods = window_periods(labeled[time_col], dataset.frequency)
    minimum, why = labeled_minimum(thresholds.min_labeled, dataset.frequency, periods)
    realized = realized_performance(champion, labeled, time_col, label, bucket) if not champion.empty else None
    estimated = estimated_performance(champion, labeled, time_col, label, bucket) if not champion.empty else None
    estimate_usable = calibration["calibrated"] is not False
    ruled = thresholds.performance_metrics
    drops = metric_drops("realized", realized, holdout, thresholds.performance_drop, minimum, ruled)
    if estimate_usable:
        drops += metric_drops("estimated", estimated, holdout, thresholds.performance_drop, minimum, ruled)
    notes = [judgement("realized", realized, minimum, why), judgement("estimated", estimated, minimum, why)]
    if not estimate_usable:
        notes.append("the estimate is not used by the rule: " + calibration["status"])
    return {
        "champion": realized,
        "estimated": estimated,
        "challenger": realized_performance(challenger, labeled, time_col, label, bucket)
        if not challenger.empty
        else None,
        "holdout": holdout,
        "calibration": calibration,
        "min_labeled": minimum,
        "min_labeled_why": why,
        "bucket": bucket,
        "notes": notes,
        "drops": drops,
        "dropped": sorted({d.split(" ", 1)[0] for d in drops}),
    }


def compute_drift(
    dataset: DatasetConfig,
    profile: dict,
    current: pd.DataFrame,
    thresholds: Thresholds,
    champion_predictions: pd.DataFrame | None = None,
    challenger_predictions: pd.DataFrame | None = None,
    holdout: dict[str, float] | None = None,
    merged: dict | None = None,
) -> dict:
    """Everything drift_check measures, as one JSON-able dict (see the module docstring).

    current: observations of the window (configured columns; with merged, the time column,
    the label's source column and the features without a fixed grid suffice). merged: the
    window's merged batch profile (mlops.monitoring.batch_profile.window_profile): the features' counts
    come from it instead of current's rows. *_predictions: time column (datetime64),
    probability, predicted_label.
    """
    from mlops.labels import add_label

    if merged is None:
        season = window_season(
            profile,
            current.get(dataset.time_column),
            thresholds.season_key,
            thresholds.min_stratum_rows,
            thresholds.season_neighbours,
        )
        features = [{**f, "source": "rows"} for f in feature_drift(dataset, profile, current, thresholds, season)]
    else:
        features, season = feature_drift_from_profile(dataset, profile, merged, thresholds, current)
    labeled = add_label(current, dataset)
    labeled[dataset.time_column] = pd.to_datetime(labeled[dataset.time_column])
    champion = champion_predictions if champion_predictions is not None else pd.DataFrame()
    challenger = challenger_predictions if challenger_predictions is not None else pd.DataFrame()
    performance = champion_performance(
        dataset, labeled, champion, challenger, holdout or {}, thresholds, calibration_status(profile)
    )
    return {
        "n_current": int(len(current)),
        "n_reference": int(profile.get("n_rows", 0)),
        "features": features,
        "season": season_summary(season, features, thresholds),
        "autocorrelation": autocorrelation_summary(profile, features, thresholds),
        "scores": score_drift(profile.get("scores"), champion["probability"]) if not champion.empty else None,
        "performance": performance,
        "thresholds": dataclasses.asdict(thresholds),
        "rule": dataset_rule(features, performance["drops"], thresholds),
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
