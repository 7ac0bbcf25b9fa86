"""Confidence-based performance estimation, frequency-aware minimums and buckets, calibration."""

import numpy as np
import pandas as pd
import pytest

from mlops.config import PROJECT_ROOT, load_config
from mlops.monitoring import drift, performance
from mlops.monitoring.profile import build_profile, calibration_profile

CONFIG = load_config(environ={})
DATASET = CONFIG.dataset
DAILY = DATASET.model_copy(update={"frequency": "1D"})


def test_estimated_metrics_by_hand():
    p = [0.9, 0.2, 0.4, 0.7, 0.6]
    yhat = [1, 0, 0, 1, 1]
    # E[TP] = .9 + .7 + .6, E[FP] = .1 + .3 + .4, E[FN] = .2 + .4, E[TN] = .8 + .6
    m = performance.estimated_metrics(p, yhat)
    assert m["accuracy"] == pytest.approx((2.2 + 1.4) / 5)
    assert m["f1"] == pytest.approx(4.4 / (4.4 + 0.8 + 0.6))
    assert m["brier"] == pytest.approx((0.09 + 0.16 + 0.24 + 0.21 + 0.24) / 5)
    # At threshold 0.5 the expected accuracy is mean(max(p, 1 - p)).
    assert m["accuracy"] == pytest.approx(np.mean(np.maximum(p, 1 - np.asarray(p))))
    assert performance.estimated_metrics([0.1, 0.2], [0, 0])["f1"] == pytest.approx(0.0)
    assert performance.estimated_metrics([], [])["accuracy"] is None


def test_estimate_equals_realized_on_a_calibrated_model():
    rng = np.random.default_rng(3)
    p = rng.beta(0.6, 2.0, 400_000)
    y = (rng.uniform(size=p.size) < p).astype(int)  # calibrated by construction
    yhat = (p >= 0.5).astype(int)
    estimated = performance.estimated_metrics(p, yhat)
    realized = performance.realized_metrics(y, p, yhat)
    for metric in ("accuracy", "f1", "brier"):
        assert estimated[metric] == pytest.approx(realized[metric], abs=0.005), metric


def test_buckets_and_minimums_follow_the_frequency():
    assert performance.bucket_frequency("1h") == "D"
    assert performance.bucket_frequency("1D") == "W"
    assert performance.bucket_frequency("7D") == "M"
    assert performance.labeled_minimum(100, "1h", 30 * 24) == (100, "configured minimum 100")
    minimum, why = performance.labeled_minimum(100, "1D", 30)
    assert minimum == 20 and "30 periods of 1D" in why
    assert performance.labeled_minimum(100, "1D", 90)[0] == 45


def test_calibration_profile_known_answers():
    y = np.array([1] * 30 + [0] * 70)
    assert calibration_profile(y, np.full(100, 0.3))["ece"] == pytest.approx(0.0, abs=1e-12)
    off = calibration_profile(np.array([1] * 50 + [0] * 50), np.full(100, 0.9))
    assert off["ece"] == pytest.approx(0.4) and not off["calibrated"]
    assert off["counts"][9] == 100 and off["observed_rate"][9] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="one non-zero length"):
        calibration_profile([], [])


def daily_window(days: int, seed: int, probability=None):
    """Daily observations, the champion's predictions for each day (calibrated unless given)."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2030-06-01", periods=days, freq="1D")
    p = rng.uniform(0.05, 0.95, days) if probability is None else np.asarray(probability, dtype=float)
    rain = (rng.uniform(size=days) < np.roll(p, 1)).astype(int)  # label at t = rain at t+1 day
    frame = pd.DataFrame({name: rng.normal(0, 1, days) for name in DATASET.features})
    frame[DATASET.time_column] = times
    frame[DATASET.label.source_column] = rain
    predictions = pd.DataFrame(
        {DATASET.time_column: times, "probability": p, "predicted_label": (p >= 0.5).astype(int)}
    )
    return frame, predictions


def _daily_drift(days: int, seed: int = 0, probability=None, holdout=None, profile_extra=None):
    dataset = DAILY.model_copy(update={"label": DATASET.label.model_copy(update={"steps_ahead": 1})})
    frame, predictions = daily_window(days, seed, probability)
    profile = {**build_profile(frame, dataset), **(profile_extra or {})}
    thresholds = drift.Thresholds.from_config(CONFIG.drift)
    holdout = holdout or {"accuracy": 0.7, "f1": 0.6, "brier": 0.2}
    return drift.compute_drift(dataset, profile, frame, thresholds, champion_predictions=predictions, holdout=holdout)


def test_a_daily_data_set_gets_weekly_points_and_realized_performance_once_enough_labels_arrived():
    result = _daily_drift(30)
    perf = result["performance"]
    assert perf["bucket"] == "W" and perf["min_labeled"] == 20
    assert perf["champion"]["n"] == 29  # the last day's truth has not arrived yet
    assert perf["estimated"]["unlabeled"]["n"] == 1 and perf["estimated"]["n"] == 30
    assert [p["period"] for p in perf["champion"]["periods"]] == [
        "2030-05-27",
        "2030-06-03",
        "2030-06-10",
        "2030-06-17",
        "2030-06-24",
    ]
    assert perf["notes"][0].startswith("realized performance judged on 29")
    assert perf["calibration"]["status"].startswith("calibration unknown")


def test_too_few_labels_is_said_and_does_not_judge():
    result = _daily_drift(12, holdout={"accuracy": 0.99, "f1": 0.99, "brier": 0.0})
    perf = result["performance"]
    assert perf["notes"][0].startswith("realized performance cannot be judged: 11 labelled predictions < 20")
    assert perf["drops"] == [] and not result["rule"]["fired"]


def test_an_uncertain_champion_fires_on_the_estimate_and_the_rule_says_which():
    # Probabilities near 0.5: expected accuracy about 0.55, far below the holdout's 0.9.
    p = np.random.default_rng(5).uniform(0.45, 0.55, 60)
    result = _daily_drift(60, probability=p, holdout={"accuracy": 0.9})
    assert result["rule"]["fired"]
    assert "estimated accuracy" in result["rule"]["reason"]
    assert "estimated" in result["performance"]["dropped"]


def test_the_estimate_of_a_miscalibrated_champion_does_not_count_in_the_rule():
    p = np.random.default_rng(5).uniform(0.45, 0.55, 60)
    bad = calibration_profile(np.array([1] * 50 + [0] * 50), np.full(100, 0.9))
    result = _daily_drift(60, probability=p, holdout={"accuracy": 0.9}, profile_extra={"calibration": bad})
    perf = result["performance"]
    assert not any(d.startswith("estimated") for d in perf["drops"])
    assert "NOT calibrated on its holdout" in perf["calibration"]["status"]
    assert any("not used by the rule" in n for n in perf["notes"])


def test_the_report_shows_realized_and_estimated_side_by_side_and_what_could_not_be_judged():
    from mlops.monitoring import drift_report

    result = _daily_drift(12)
    result.update(
        drift_run_id="manual__d",
        airflow_run_id="manual__d",
        window={"start": "2030-05-31 00:00:00", "end": "2030-06-12 00:00:00", "days": 12},
        champion={"model_name": "m", "version": "1", "run_id": "r", "profile_uri": "u"},
        created_at="2030-06-12 01:00:00",
    )
    page = drift_report.render(drift.json_safe(result))
    assert "champion realized (labels arrived)" in page and "champion estimated (CBPE, whole window)" in page
    assert "champion estimated, truth not yet arrived" in page
    assert "realized performance cannot be judged: 11 labelled predictions &lt; 20" in page
    assert "calibration unknown" in page


def test_only_the_configured_performance_metrics_fire_the_rule():
    # A window of lower prevalence: F1 falls with it, accuracy and Brier do not (the daily data set).
    holdout = {"accuracy": 0.73, "f1": 0.79, "brier": 0.19}
    window = {"n": 89, "accuracy": 0.85, "f1": 0.24, "brier": 0.10}
    every = performance.metric_drops("realized", window, holdout, 0.1, 45)
    assert every == ["realized f1 0.240 vs holdout 0.790 (worse by 0.550 > 0.1)"]
    assert performance.metric_drops("realized", window, holdout, 0.1, 45, ("accuracy", "brier")) == []
    daily = load_config(PROJECT_ROOT / "include" / "config" / "city_bikes_daily.yaml", environ={})
    thresholds = drift.Thresholds.from_config(daily.drift)
    assert thresholds.performance_metrics == ("accuracy", "brier")
    assert drift.Thresholds.from_config(CONFIG.drift).performance_metrics == ("accuracy", "f1", "brier")
    labeled = pd.DataFrame({"Date": pd.date_range("2023-10-01", periods=90, freq="D")})
    labeled["busy_tomorrow"] = (np.arange(90) % 10 == 0).astype(float)  # few busy days
    predictions = labeled[["Date"]].assign(probability=0.2, predicted_label=0)
    result = drift.champion_performance(
        daily.dataset, labeled, predictions, pd.DataFrame(), holdout, thresholds, {"calibrated": True}
    )
    assert result["drops"] == [] and result["champion"]["f1"] == 0.0
