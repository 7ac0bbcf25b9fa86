"""A profile of a data set: what drift_check compares recent data against.

train stores the profile of the champion's training data as an MLflow artifact of the
model's run (reference/reference_profile.json). Numeric features are summarised by
decile bin edges of the reference with the count of reference rows per bin (PSI and
binned statistics need nothing more), plus quantiles, mean, std and missing rate;
categorical features by their value frequencies. Model scores get fixed bins on [0, 1].
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from mlops.config import DatasetConfig

PROFILE_ARTIFACT_PATH = "reference"
PROFILE_FILE = "reference_profile.json"
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
NUMERIC_BINS = 10
SCORE_BIN_EDGES = [i / 10 for i in range(11)]


def _numeric_profile(values: pd.Series) -> dict:
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


def _categorical_profile(values: pd.Series) -> dict:
    total = len(values)
    present = values.dropna().astype(str)
    freqs = present.value_counts(normalize=True)
    return {
        "type": "categorical",
        "count": int(total),
        "missing_rate": float(1 - len(present) / total) if total else 0.0,
        "frequencies": {str(k): float(v) for k, v in freqs.items()},
    }


def build_profile(frame: pd.DataFrame, dataset: DatasetConfig, scores=None) -> dict:
    """Profile the configured features of frame (and the model's scores on it, if given)."""
    features = {}
    for name in dataset.features:
        if dataset.columns[name].type == "string":
            features[name] = _categorical_profile(frame[name])
        else:
            features[name] = _numeric_profile(frame[name])
    profile = {
        "n_rows": int(len(frame)),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "features": features,
    }
    if scores is not None:
        scores = np.asarray(scores, dtype=float)
        counts = np.histogram(scores, bins=SCORE_BIN_EDGES)[0]
        profile["scores"] = {
            "bin_edges": SCORE_BIN_EDGES,
            "bin_counts": counts.astype(int).tolist(),
            "mean": float(scores.mean()),
        }
    return profile
