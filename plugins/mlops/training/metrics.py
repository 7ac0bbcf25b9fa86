"""Classification metrics, the two baselines, the paired bootstrap, and evaluation plots.

Every model and baseline is evaluated by the same functions on the same rows, so their
numbers are comparable. `score()` is "higher is better" for every promotion metric
(neg_log_loss and neg_brier are negated), as in scikit-learn's scorers.
"""

from __future__ import annotations

import numpy as np

METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "brier")
# Probabilities of exactly 0 or 1 (the persistence baseline) make log loss infinite.
PROBABILITY_CLIP = 1e-6
# promotion.metric -> (scikit-learn scorer for the search, sign applied to METRICS value)
SCORERS = {
    "roc_auc": ("roc_auc", "roc_auc", 1.0),
    "f1": ("f1", "f1", 1.0),
    "accuracy": ("accuracy", "accuracy", 1.0),
    "neg_log_loss": ("neg_log_loss", "log_loss", -1.0),
    "neg_brier": ("neg_brier_score", "brier", -1.0),
}


def classification_metrics(y_true, proba, threshold: float) -> dict[str, float]:
    """The seven metrics logged for every candidate and baseline."""
    from sklearn import metrics as skm

    y = np.asarray(y_true, dtype=int)
    p = np.clip(np.asarray(proba, dtype=float), PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    pred = (p >= threshold).astype(int)
    both_classes = len(np.unique(y)) == 2
    return {
        "accuracy": float(skm.accuracy_score(y, pred)),
        "precision": float(skm.precision_score(y, pred, zero_division=0)),
        "recall": float(skm.recall_score(y, pred, zero_division=0)),
        "f1": float(skm.f1_score(y, pred, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(y, p)) if both_classes else float("nan"),
        "log_loss": float(skm.log_loss(y, p, labels=[0, 1])),
        "brier": float(skm.brier_score_loss(y, p)),
    }


def score(metric: str, y_true, proba, threshold: float) -> float:
    """The promotion metric, higher is better."""
    _, name, sign = SCORERS[metric]
    return sign * classification_metrics(y_true, proba, threshold)[name]


def search_scorer(metric: str) -> str:
    """The scikit-learn scoring name used to tune candidates on the promotion metric."""
    return SCORERS[metric][0]


def persistence_proba(frame, dataset) -> np.ndarray:
    """Persistence baseline: the label equals the current condition (a hard 0/1 forecast)."""
    source = frame[dataset.label.source_column]
    return source.isin(dataset.label.positive_values).to_numpy(dtype=float)


def base_rate_proba(n_rows: int, positive_rate: float) -> np.ndarray:
    """Base-rate baseline: the training set's positive rate for every row."""
    return np.full(n_rows, float(positive_rate))


def bootstrap_weights(n_rows: int, samples: int, seed: int) -> np.ndarray:
    """How often each row is drawn in each bootstrap resample: int array (samples, n_rows),
    each row summing to n_rows. Drawn once as a matrix (numpy's seeded default_rng)."""
    idx = np.random.default_rng(seed).integers(0, n_rows, (samples, n_rows))
    offsets = (np.arange(samples) * n_rows)[:, None]
    return np.bincount((idx + offsets).ravel(), minlength=samples * n_rows).reshape(samples, n_rows)


def _weighted_roc_auc(y: np.ndarray, p: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC of every resample at once, from the rank (Mann-Whitney) form with ties counted
    one half: AUC = sum over positive i, negative j of w_i w_j [p_i > p_j] + 0.5 [p_i = p_j],
    divided by W_pos W_neg. Rows are grouped by distinct score in ascending order, so "below"
    is the cumulative negative weight of the earlier groups. NaN where a resample lacks a class."""
    order = np.argsort(p, kind="stable")
    sorted_p = p[order]
    starts = np.flatnonzero(np.r_[True, sorted_p[1:] != sorted_p[:-1]])
    w = weights[:, order].astype(float)
    positive = y[order] == 1
    pos = np.add.reduceat(w * positive, starts, axis=1)
    neg = np.add.reduceat(w * ~positive, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    numerator = (pos * (below + 0.5 * neg)).sum(axis=1)
    denominator = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


def resampled_scores(metric: str, y_true, proba, weights: np.ndarray, threshold: float) -> np.ndarray:
    """score(metric) on every bootstrap resample (rows of `weights`), vectorized: shape (samples,).

    The weighted forms equal the metrics of the resampled rows (sklearn's definitions: F1 with
    zero_division=0, log loss and Brier on probabilities clipped like classification_metrics).
    NaN for ROC AUC on a resample holding one class only."""
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(proba, dtype=float)
    if metric == "roc_auc":
        return _weighted_roc_auc(y, p, weights)
    w = weights.astype(float)
    n = w.sum(axis=1)
    p = np.clip(p, PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    if metric == "neg_log_loss":
        return -(w @ -(y * np.log(p) + (1 - y) * np.log(1 - p))) / n
    if metric == "neg_brier":
        return -(w @ (p - y) ** 2) / n
    pred = p >= threshold
    if metric == "accuracy":
        return (w @ (pred == y)) / n
    true_pos = w @ (pred & (y == 1))
    wrong = w @ (pred != y)  # false positives + false negatives
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(true_pos > 0, 2 * true_pos / (2 * true_pos + wrong), 0.0)


def paired_bootstrap(
    metric: str,
    y_true,
    proba_a,
    proba_b,
    *,
    samples: int,
    confidence: float,
    seed: int,
    threshold: float,
) -> dict[str, float]:
    """Percentile bootstrap CI of score(a) - score(b), resampling the same holdout rows for both
    models (Efron & Tibshirani 1993, ch. 13; paired as in DeLong's setting). The resamples are
    drawn once as a weight matrix (bootstrap_weights) and scored as matrices; the same seed gives
    the same resamples for every comparison. Resamples where ROC AUC is undefined (one class) are
    dropped; `samples` in the result counts the ones used."""
    y = np.asarray(y_true, dtype=int)
    weights = bootstrap_weights(len(y), samples, seed)
    diffs = resampled_scores(metric, y, proba_a, weights, threshold) - resampled_scores(
        metric, y, proba_b, weights, threshold
    )
    diffs = diffs[~np.isnan(diffs)]
    alpha = (1 - confidence) / 2
    low, high = np.quantile(diffs, [alpha, 1 - alpha]) if len(diffs) else (np.nan, np.nan)
    return {
        "difference": score(metric, y, proba_a, threshold) - score(metric, y, proba_b, threshold),
        "ci_low": float(low),
        "ci_high": float(high),
        "samples": int(len(diffs)),
        "confidence": float(confidence),
    }


def confusion_matrix_figure(y_true, proba, threshold: float, title: str):
    """A labelled confusion matrix as a matplotlib figure (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(
        np.asarray(y_true, dtype=int), (np.asarray(proba) >= threshold).astype(int), labels=[0, 1]
    )
    fig, ax = plt.subplots(figsize=(4, 3.5))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", color="black")
    ax.set_xticks([0, 1], ["0", "1"])
    ax.set_yticks([0, 1], ["0", "1"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def calibration_figure(y_true, proba, title: str, bins: int = 10):
    """Reliability diagram: observed positive rate per bin of predicted probability."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve

    observed, predicted = calibration_curve(
        np.asarray(y_true, dtype=int), np.asarray(proba), n_bins=bins, strategy="uniform"
    )
    fig, ax = plt.subplots(figsize=(4, 3.5))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    ax.plot(predicted, observed, marker="o", label="model")
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed positive rate")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig
