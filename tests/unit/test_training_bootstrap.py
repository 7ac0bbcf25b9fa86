"""The vectorized paired bootstrap against the resample-by-resample loop of sklearn metrics."""

import numpy as np
import pytest
from bootstrap_reference import paired_bootstrap_loop
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from mlops.training.metrics import bootstrap_weights, paired_bootstrap, resampled_scores

METRICS = ["roc_auc", "neg_brier", "neg_log_loss", "f1", "accuracy"]


def _holdout(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.15).astype(int)
    good = np.clip(0.15 + 0.35 * y + rng.normal(0, 0.2, n), 0, 1)
    # rounded: many tied scores, as tree ensembles give
    other = np.round(np.clip(0.15 + 0.25 * y + rng.normal(0, 0.25, n), 0, 1), 2)
    return y, good, other


@pytest.mark.parametrize("metric", METRICS)
def test_vectorized_bootstrap_agrees_with_the_loop_within_monte_carlo_error(metric):
    y, a, b = _holdout()
    new = paired_bootstrap(metric, y, a, b, samples=1000, confidence=0.95, seed=7, threshold=0.5)
    old = paired_bootstrap_loop(metric, y, a, b, samples=1000, confidence=0.95, seed=11, threshold=0.5)
    # Different seeds: the two CIs differ only by Monte Carlo error. The standard error of a
    # 2.5% quantile from 1000 resamples is about 0.085 bootstrap standard deviations (0.12 for
    # the difference of two); allow 0.3.
    spread = old["ci_high"] - old["ci_low"]  # about 4 bootstrap standard deviations
    assert new["difference"] == pytest.approx(old["difference"], abs=1e-12)
    assert new["ci_low"] == pytest.approx(old["ci_low"], abs=0.3 * spread / 4)
    assert new["ci_high"] == pytest.approx(old["ci_high"], abs=0.3 * spread / 4)


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.integers(0, 1), st.sampled_from([0.0, 0.1, 0.5, 0.5, 0.9, 1.0])), min_size=2, max_size=40
    ),
    seed=st.integers(0, 2**16),
    metric=st.sampled_from(METRICS),
)
def test_each_resample_scores_like_sklearn_on_the_drawn_rows(data, seed, metric):
    y = np.array([d[0] for d in data])
    p = np.array([d[1] for d in data])
    weights = bootstrap_weights(len(y), 5, seed)
    got = resampled_scores(metric, y, p, weights, 0.5)
    for row, value in zip(weights, got, strict=True):
        idx = np.repeat(np.arange(len(y)), row)
        ys, ps = y[idx], np.clip(p[idx], 1e-6, 1 - 1e-6)
        if metric == "roc_auc":
            expected = skm.roc_auc_score(ys, ps) if len(set(ys)) == 2 else np.nan
        elif metric == "neg_brier":
            expected = -skm.brier_score_loss(ys, ps)
        elif metric == "neg_log_loss":
            expected = -skm.log_loss(ys, ps, labels=[0, 1])
        elif metric == "accuracy":
            expected = skm.accuracy_score(ys, ps >= 0.5)
        else:
            expected = skm.f1_score(ys, (ps >= 0.5).astype(int), zero_division=0)
        assert value == pytest.approx(expected, abs=1e-9, nan_ok=True)


def test_weights_are_resamples_of_the_holdout():
    weights = bootstrap_weights(50, 20, seed=1)
    assert weights.shape == (20, 50) and (weights.sum(axis=1) == 50).all()
    assert (weights == bootstrap_weights(50, 20, seed=1)).all()
