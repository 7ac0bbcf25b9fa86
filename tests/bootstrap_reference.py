"""The paired bootstrap as one loop of scikit-learn metric calls per resample: the reference
that mlops.training.metrics.paired_bootstrap (vectorized) is checked and benchmarked against."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

from mlops.training.metrics import PROBABILITY_CLIP, score


def _score(metric: str, y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    if metric == "roc_auc":
        return float(skm.roc_auc_score(y, p))
    p = np.clip(p, PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    if metric == "neg_log_loss":
        return -float(skm.log_loss(y, p, labels=[0, 1]))
    if metric == "neg_brier":
        return -float(skm.brier_score_loss(y, p))
    pred = (p >= threshold).astype(int)
    if metric == "accuracy":
        return float(skm.accuracy_score(y, pred))
    return float(skm.f1_score(y, pred, zero_division=0))


def paired_bootstrap_loop(metric, y_true, proba_a, proba_b, *, samples, confidence, seed, threshold) -> dict:
    """The previous implementation: one resample and two sklearn metric calls per iteration."""
    y = np.asarray(y_true, dtype=int)
    a = np.asarray(proba_a, dtype=float)
    b = np.asarray(proba_b, dtype=float)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(samples):
        idx = rng.integers(0, len(y), len(y))
        if metric == "roc_auc" and len(np.unique(y[idx])) < 2:
            continue
        diffs.append(_score(metric, y[idx], a[idx], threshold) - _score(metric, y[idx], b[idx], threshold))
    alpha = (1 - confidence) / 2
    return {
        "difference": score(metric, y, a, threshold) - score(metric, y, b, threshold),
        "ci_low": float(np.quantile(diffs, alpha)),
        "ci_high": float(np.quantile(diffs, 1 - alpha)),
        "samples": len(diffs),
        "confidence": float(confidence),
    }
