"""A profile of a data set: what drift_check compares recent data against.

train stores the profile of the champion's training data as an MLflow artifact of the
model's run (reference/reference_profile.json). Numeric features are summarised by
decile bin edges of the reference with the count of reference rows per bin (PSI and
binned statistics need nothing more), plus quantiles, mean, std and missing rate;
categorical features by their value frequencies. Model scores get fixed bins on [0, 1].

Calendar strata: when the frame has the data set's time column, every count is also kept per
calendar month of that column (``strata``), on the same bin edges: bin counts and missing
counts per month for numeric features, category counts per month for categorical ones, score
bin counts per month. drift_check sums months into the configured season key (month,
quarter) and compares a window with the reference of the same time of year
(mlops.monitoring.drift.season_weighted). Twelve months of ten bins keep a profile small whatever the
number of rows. Profiles written before strata existed simply lack these keys.

Autocorrelation: when the frame has the time column, every feature also gets
``autocorrelation`` (mlops.monitoring.autocorrelation): its lag-1 autocorrelation at the data
set's frequency and the design effect tau = n / n_eff of the shares drift_check tests (the
indicators at the bin edges, or of the categories), which drift_check divides its sample
sizes by. Profiles without it are treated as independent rows (design effect 1).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd

from mlops.config import DatasetConfig
from mlops.monitoring import autocorrelation

PROFILE_ARTIFACT_PATH = "reference"
PROFILE_FILE = "reference_profile.json"
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
NUMERIC_BINS = 10
SCORE_BIN_EDGES = [i / 10 for i in range(11)]
# The finest calendar stratum kept; coarser ones (quarter) are sums of months.
STRATUM_UNIT = "month"
CALIBRATION_BINS = 10
# Expected calibration error up to which confidence-based performance estimation is trusted.
CALIBRATION_TOLERANCE = 0.05


def month_strata(times) -> np.ndarray:
    """Calendar month (1..12) of each timestamp, as strings (the profile's JSON keys).

    Raises ValueError naming the first row whose time is missing or not a time.
    """
    months = pd.to_datetime(pd.Series(times), errors="coerce").dt.month
    if months.isna().any():
        row = int(np.flatnonzero(months.isna().to_numpy())[0])
        raise ValueError(
            f"row {row}: time {pd.Series(times).iloc[row]!r} is missing or not a time; cannot find its month"
        )
    return months.astype(int).astype(str).to_numpy()


def _per_stratum(strata: np.ndarray | None, values: pd.Series, summarise) -> dict:
    """{stratum: summarise(values of that stratum)} for every stratum present."""
    if strata is None:
        return {}
    return {str(s): summarise(values[strata == s]) for s in sorted(set(strata), key=int)}


def _stratum_bin_counts(strata: np.ndarray, values: np.ndarray, inner: np.ndarray) -> dict:
    """{stratum: counts per bin of its present values}, in one bincount over every row."""
    labels, codes = np.unique(strata, return_inverse=True)
    present = ~np.isnan(values)
    bins = np.searchsorted(inner, values[present], side="left")
    k = len(inner) + 1
    table = np.bincount(codes[present] * k + bins, minlength=len(labels) * k).reshape(len(labels), k)
    order = sorted(range(len(labels)), key=lambda i: int(labels[i]))
    return {str(labels[i]): table[i].astype(int).tolist() for i in order}


@dataclasses.dataclass(frozen=True)
class TimeOrder:
    """The rows the autocorrelation is estimated on: the first row of each period of the data
    set's frequency, over the last autocorrelation.MAX_PERIODS periods (rows: their indices in
    the frame), with their grid periods (grid_positions) and calendar months."""

    rows: np.ndarray
    positions: np.ndarray
    months: np.ndarray
    frequency: str


def _time_order(frame: pd.DataFrame, dataset: DatasetConfig, strata: np.ndarray | None) -> TimeOrder | None:
    if strata is None:
        return None
    positions = autocorrelation.grid_positions(frame[dataset.time_column], dataset.frequency)
    periods, first = np.unique(positions, return_index=True)
    rows = first[periods >= periods[-1] - autocorrelation.MAX_PERIODS + 1]
    return TimeOrder(rows, positions[rows], strata[rows].astype(int), dataset.frequency)


def _autocorrelation(
    order: TimeOrder, present: np.ndarray, values: np.ndarray | None, indicators, weights=None
) -> dict:
    """The profile's autocorrelation entry of one feature (module docstring).

    present: which of order.rows have a value; values: those rows' numeric values, or None
    (categorical); indicators: (k, present rows) 0/1; weights: per indicator, or None.
    """
    positions, months = order.positions[present], order.months[present]
    effect = autocorrelation.design_effect(indicators, positions, months, weights)
    return {
        "frequency": order.frequency,
        "lag1": autocorrelation.lag1(values, positions, months) if values is not None else None,
        "design_effect": effect["design_effect"],
        "taus": effect["taus"],
        "pairs_lag1": effect["window_pairs"],
    }


def _numeric_profile(values: pd.Series, strata: np.ndarray | None = None, order: TimeOrder | None = None) -> dict:
    total = len(values)
    numbers = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    profile = {
        "type": "numeric",
        "count": int(total),
        "missing_rate": float(1 - len(numbers) / total) if total else 0.0,
    }
    if len(numbers) == 0:
        return {**profile, "bin_edges": [], "bin_counts": [], "quantiles": {}, "mean": None, "std": None}
    # One sort serves every quantile, the bin counts, min and max (np.quantile would select
    # again for each value: seconds on a million-row training set).
    ordered = np.sort(numbers)
    # Inner edges at the deciles; the outer bins are open (-inf, e1] ... (e9, inf).
    inner = np.unique(sorted_quantiles(ordered, np.linspace(0, 1, NUMERIC_BINS + 1)[1:-1]))
    at_or_below = np.searchsorted(ordered, inner, side="right")
    counts = np.diff(np.concatenate([[0], at_or_below, [len(ordered)]])).astype(int).tolist()
    quantiles = sorted_quantiles(ordered, QUANTILES)
    if strata is not None:
        numeric = pd.to_numeric(values, errors="coerce")
        profile["strata_bin_counts"] = _stratum_bin_counts(strata, numeric.to_numpy(dtype=float), inner)
        profile["strata_missing"] = _per_stratum(strata, numeric, lambda part: int(part.isna().sum()))
    if order is not None:
        sample = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)[order.rows]
        present = ~np.isnan(sample)
        indicators = sample[present][None, :] <= inner[:, None]
        profile["autocorrelation"] = _autocorrelation(order, present, sample[present], indicators)
    return {
        **profile,
        "bin_edges": inner.tolist(),
        "bin_counts": counts,
        "quantiles": {str(q): float(v) for q, v in zip(QUANTILES, quantiles, strict=True)},
        "mean": float(numbers.mean()),
        "std": float(numbers.std()),
        "min": float(ordered[0]),
        "max": float(ordered[-1]),
    }


def sorted_quantiles(ordered: np.ndarray, qs) -> np.ndarray:
    """np.quantile(values, qs) (its default linear method) of already sorted values."""
    position = np.asarray(qs, dtype=float) * (len(ordered) - 1)
    below = np.floor(position).astype(int)
    above = np.minimum(below + 1, len(ordered) - 1)
    low, high, t = ordered[below], ordered[above], position - below
    # numpy's lerp: from the nearer end, so q = 1 gives the maximum exactly.
    return np.where(t >= 0.5, high - (high - low) * (1 - t), low + (high - low) * t)


def bin_counts(values: np.ndarray, inner_edges: list[float]) -> list[int]:
    """Counts per bin for bins (-inf, e0], (e0, e1], ..., (e_last, inf)."""
    idx = np.searchsorted(np.asarray(inner_edges, dtype=float), values, side="left")
    return np.bincount(idx, minlength=len(inner_edges) + 1).astype(int).tolist()


def _categorical_profile(values: pd.Series, strata: np.ndarray | None = None, order: TimeOrder | None = None) -> dict:
    total = len(values)
    present = values.dropna().astype(str)
    freqs = present.value_counts(normalize=True)
    profile = {
        "type": "categorical",
        "count": int(total),
        "missing_rate": float(1 - len(present) / total) if total else 0.0,
        "frequencies": {str(k): float(v) for k, v in freqs.items()},
    }
    if strata is not None:
        profile["strata_counts"] = _per_stratum(
            strata, values, lambda part: {str(k): int(v) for k, v in part.dropna().astype(str).value_counts().items()}
        )
        profile["strata_missing"] = _per_stratum(strata, values, lambda part: int(part.isna().sum()))
    if order is not None:
        sample = values.iloc[order.rows]
        mask = sample.notna().to_numpy()
        top = freqs.index[: autocorrelation.MAX_CATEGORIES]
        indicators = sample[mask].astype(str).to_numpy()[None, :] == np.asarray(top, dtype=object)[:, None]
        # Rao-Scott's weights of the cells' design effects: 1 - p_i.
        weights = 1 - freqs.iloc[: len(top)].to_numpy()
        profile["autocorrelation"] = _autocorrelation(order, mask, None, indicators, weights)
    return profile


def build_profile(frame: pd.DataFrame, dataset: DatasetConfig, scores=None, calibration: dict | None = None) -> dict:
    """Profile the configured features of frame (and the model's scores on it, if given).

    frame: one row per observation; when it has dataset.time_column, the counts are also
    kept per calendar month (module docstring). scores: the model's probabilities on the
    rows of frame, same length. calibration: calibration_profile() of the model on its
    holdout, stored as is (drift_check uses it to trust or doubt its performance estimate).
    """
    time_col = dataset.time_column
    strata = month_strata(frame[time_col]) if time_col in frame and len(frame) else None
    order = _time_order(frame, dataset, strata)
    features = {}
    for name in dataset.features:
        if dataset.columns[name].type == "string":
            features[name] = _categorical_profile(frame[name], strata, order)
        else:
            features[name] = _numeric_profile(frame[name], strata, order)
    profile = {
        "n_rows": int(len(frame)),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "features": features,
    }
    if strata is not None:
        rows = pd.Series(strata).value_counts()
        profile["strata"] = {
            "column": time_col,
            "unit": STRATUM_UNIT,
            "rows": {str(s): int(rows[s]) for s in sorted(rows.index, key=int)},
        }
    if scores is not None:
        scores = np.asarray(scores, dtype=float)
        counts = np.histogram(scores, bins=SCORE_BIN_EDGES)[0]
        profile["scores"] = {
            "bin_edges": SCORE_BIN_EDGES,
            "bin_counts": counts.astype(int).tolist(),
            "mean": float(scores.mean()),
        }
    if calibration is not None:
        profile["calibration"] = calibration
    return profile


def calibration_profile(y_true, probability, bins: int = CALIBRATION_BINS) -> dict:
    """Reliability table and expected calibration error of a classifier on labelled rows.

    y_true: 0/1 labels, probability: predicted probability of class 1, same length n >= 1.
    Equal-width bins on [0, 1]; per bin the row count, the mean predicted probability and the
    observed positive rate. ECE = sum over bins of (n_bin / n) * |observed - mean predicted|
    (Naeini, Cooper, Hauskrecht 2015, "Obtaining well calibrated probabilities using Bayesian
    binning", AAAI; the form used by Guo et al. 2017, "On calibration of modern neural
    networks", eq. 3). calibrated: ECE <= CALIBRATION_TOLERANCE.
    Raises ValueError when the inputs are empty or of different lengths.
    """
    y = np.asarray(y_true, dtype=float)
    p = np.clip(np.asarray(probability, dtype=float), 0.0, 1.0)
    if len(y) == 0 or len(y) != len(p):
        raise ValueError(
            f"calibration needs labels and probabilities of one non-zero length, got {len(y)} and {len(p)}"
        )
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = np.bincount(index, weights=p, minlength=bins) / counts
        observed = np.bincount(index, weights=y, minlength=bins) / counts
    gaps = np.where(counts > 0, np.abs(observed - mean_predicted), 0.0)
    ece = float(np.sum(counts / len(y) * gaps))
    return {
        "n": int(len(y)),
        "bin_edges": edges.tolist(),
        "counts": counts.astype(int).tolist(),
        "mean_predicted": [None if c == 0 else float(v) for c, v in zip(counts, mean_predicted, strict=True)],
        "observed_rate": [None if c == 0 else float(v) for c, v in zip(counts, observed, strict=True)],
        "ece": ece,
        "tolerance": CALIBRATION_TOLERANCE,
        "calibrated": ece <= CALIBRATION_TOLERANCE,
    }
