"""The promotion policy, the paired bootstrap and the metrics, on inputs with known answers."""

import numpy as np
import pytest

from mlops.config import load_config
from mlops.metrics import base_rate_proba, classification_metrics, paired_bootstrap, persistence_proba, score
from mlops.promotion import decide

DATASET = load_config(environ={}).dataset
NO_TEST = None


def test_first_model_becomes_champion_only_if_it_beats_both_baselines():
    ok = decide("roc_auc", 0.9, None, 0.7, 0.5, NO_TEST, 0.0)
    assert ok["promote"] and ok["outcome"] == "first_champion"
    loses = decide("roc_auc", 0.65, None, 0.7, 0.5, NO_TEST, 0.0)
    assert not loses["promote"] and "persistence baseline" in loses["reason"]
    base = decide("roc_auc", 0.5, None, 0.4, 0.5, NO_TEST, 0.0)
    assert not base["promote"] and "base rate baseline" in base["reason"]


def test_challenger_needs_margin_and_ci_above_zero():
    better = {"difference": 0.03, "ci_low": 0.01, "ci_high": 0.05, "confidence": 0.95}
    assert decide("roc_auc", 0.93, 0.90, 0.7, 0.5, better, 0.0, champion_version="1")["outcome"] == "promoted"
    # the point estimate is better but the interval includes 0: not significant
    noisy = {"difference": 0.01, "ci_low": -0.01, "ci_high": 0.03, "confidence": 0.95}
    result = decide("roc_auc", 0.91, 0.90, 0.7, 0.5, noisy, 0.0, champion_version="1")
    assert not result["promote"] and "does not lie above 0" in result["reason"]
    # significant but below the configured margin
    small = {"difference": 0.01, "ci_low": 0.005, "ci_high": 0.015, "confidence": 0.95}
    result = decide("roc_auc", 0.91, 0.90, 0.7, 0.5, small, 0.02, champion_version="1")
    assert not result["promote"] and "margin" in result["reason"]


def test_beating_the_champion_is_not_enough_when_persistence_is_better():
    better = {"difference": 0.05, "ci_low": 0.02, "ci_high": 0.08, "confidence": 0.95}
    result = decide("roc_auc", 0.70, 0.65, 0.75, 0.5, better, 0.0, champion_version="1")
    assert not result["promote"] and "persistence" in result["reason"]


def test_force_overrides_and_says_what_the_gate_said():
    worse = {"difference": -0.05, "ci_low": -0.08, "ci_high": -0.02, "confidence": 0.95}
    result = decide("roc_auc", 0.85, 0.90, 0.7, 0.5, worse, 0.0, force=True, champion_version="1")
    assert result["promote"] and result["outcome"] == "forced" and "champion v1" in result["reason"]


def test_paired_bootstrap_of_identical_models_is_exactly_zero():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = rng.random(300)
    test = paired_bootstrap("roc_auc", y, p, p, samples=200, confidence=0.95, seed=1, threshold=0.5)
    assert test["difference"] == 0 and test["ci_low"] == 0 and test["ci_high"] == 0


def test_paired_bootstrap_separates_a_clearly_better_model_and_is_seeded():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    good = np.clip(y * 0.6 + rng.random(400) * 0.4, 0, 1)
    bad = rng.random(400)
    test = paired_bootstrap("roc_auc", y, good, bad, samples=300, confidence=0.95, seed=3, threshold=0.5)
    assert test["ci_low"] > 0.2
    assert test == paired_bootstrap("roc_auc", y, good, bad, samples=300, confidence=0.95, seed=3, threshold=0.5)
    reverse = paired_bootstrap("neg_brier", y, bad, good, samples=300, confidence=0.95, seed=3, threshold=0.5)
    assert reverse["ci_high"] < 0


def test_metrics_on_a_known_answer():
    y = np.array([1, 1, 0, 0])
    p = np.array([0.9, 0.4, 0.6, 0.1])
    m = classification_metrics(y, p, threshold=0.5)
    assert m["accuracy"] == 0.5 and m["precision"] == 0.5 and m["recall"] == 0.5
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["brier"] == pytest.approx((0.01 + 0.36 + 0.36 + 0.01) / 4)
    assert score("neg_brier", y, p, 0.5) == pytest.approx(-m["brier"])


def test_baselines():
    import pandas as pd

    frame = pd.DataFrame({"Current_weather_condition": [1, 0, 1]})
    assert persistence_proba(frame, DATASET).tolist() == [1.0, 0.0, 1.0]
    assert base_rate_proba(3, 0.25).tolist() == [0.25, 0.25, 0.25]
    # a hard 0/1 forecast has a finite log loss (clipped), not infinity
    assert np.isfinite(classification_metrics([0, 1], [1.0, 0.0], 0.5)["log_loss"])
