"""Drift statistics checked against scipy on raw data and against values computed by hand."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlops.config import load_config
from mlops.monitoring import drift
from mlops.monitoring.profile import build_profile

CONFIG = load_config(environ={})
DATASET = CONFIG.dataset
THRESHOLDS = drift.Thresholds.from_config(CONFIG.drift)


# --- PSI ---------------------------------------------------------------------------------


def test_psi_matches_hand_computed_value():
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5)
    expected = -0.25 * math.log(0.5) + 0.25 * math.log(1.5)
    assert drift.psi([50, 50], [25, 75]) == pytest.approx(expected, rel=1e-12)


def test_psi_of_identical_distributions_is_zero_and_is_symmetric():
    assert drift.psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0, abs=1e-15)
    assert drift.psi([10, 20, 70], [30, 30, 40]) == pytest.approx(drift.psi([30, 30, 40], [10, 20, 70]))


def test_psi_floors_empty_bins_instead_of_returning_infinity():
    eps = drift.PSI_EPSILON
    expected = (0.5 - 1.0) * math.log(0.5 / 1.0) + (0.5 - eps) * math.log(0.5 / eps)
    assert drift.psi([100, 0], [50, 50]) == pytest.approx(expected, rel=1e-12)


# --- KS on binned counts -------------------------------------------------------------------


def test_binned_ks_equals_scipy_when_the_edges_cover_every_value():
    # Integer data 0..9 and inner edges 0..8: each bin holds exactly one value, so the binned
    # empirical CDFs are the exact ones and the statistic must equal scipy's on the raw rows.
    rng = np.random.default_rng(1)
    ref = rng.integers(0, 10, 3000).astype(float)
    cur = np.clip(rng.integers(0, 10, 2000) + rng.integers(0, 2, 2000), 0, 9).astype(float)
    edges = [float(e) for e in range(9)]
    from mlops.monitoring.profile import bin_counts

    statistic, pvalue = drift.ks_from_bins(bin_counts(ref, edges), bin_counts(cur, edges))
    expected = stats.ks_2samp(ref, cur, method="asymp")
    assert statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert pvalue == pytest.approx(expected.pvalue, rel=1e-6, abs=1e-300)


def test_binned_ks_pvalue_on_large_samples_agrees_with_scipy():
    # n = m = 40,000: effective n 20,000 uses the limiting distribution; within 3% of scipy.
    from mlops.monitoring.profile import bin_counts

    rng = np.random.default_rng(11)
    edges = [float(e) for e in range(9)]
    ref = rng.integers(0, 10, 40_000).astype(float)
    for extra in (0.0, 0.01, 0.02):
        cur = np.where(rng.uniform(size=40_000) < extra, 9, rng.integers(0, 10, 40_000)).astype(float)
        statistic, pvalue = drift.ks_from_bins(bin_counts(ref, edges), bin_counts(cur, edges))
        expected = stats.ks_2samp(ref, cur, method="asymp")
        assert statistic == pytest.approx(expected.statistic, abs=1e-12)
        assert pvalue == pytest.approx(expected.pvalue, rel=0.03, abs=1e-12)


@pytest.mark.parametrize("shift", [0.0, 0.1, 0.5, 2.0])
def test_binned_ks_on_continuous_data_is_conservative_and_close_to_scipy(shift):
    rng = np.random.default_rng(2)
    ref = rng.normal(10, 3, 5000)
    cur = rng.normal(10 + 3 * shift, 3, 4000)
    profile = drift_profile(ref)
    result = drift.numeric_feature_drift("x", profile, pd.Series(cur), THRESHOLDS)
    raw = stats.ks_2samp(ref, cur)
    # Evaluated only at the 9 decile edges: never above the raw statistic, and close to it.
    assert result["statistic"] <= raw.statistic + 1e-12
    assert result["statistic"] >= raw.statistic - 0.03
    assert result["p_value"] >= raw.pvalue * (1 - 1e-9)


def drift_profile(values) -> dict:
    frame = pd.DataFrame({name: values for name in DATASET.features})
    return build_profile(frame, DATASET)["features"]["Temperature_C"]


# --- chi-square and Jensen-Shannon ------------------------------------------------------------


def test_chi2_homogeneity_matches_hand_computed_value():
    # Table [[30, 70], [50, 50]]: expected counts 40 / 60 in both rows.
    statistic, pvalue = drift.chi2_homogeneity([30, 70], [50, 50])
    expected = 2 * (10**2 / 40 + 10**2 / 60)
    assert statistic == pytest.approx(expected, rel=1e-12)
    assert pvalue == pytest.approx(stats.chi2.sf(expected, df=1), rel=1e-9)


def test_chi2_ignores_categories_absent_on_both_sides_and_handles_a_single_one():
    with_empty = drift.chi2_homogeneity([30, 0, 70], [50, 0, 50])
    assert with_empty == pytest.approx(drift.chi2_homogeneity([30, 70], [50, 50]))
    assert drift.chi2_homogeneity([10], [20]) == (0.0, 1.0)


def test_js_distance_bounds():
    assert drift.js_distance([1, 2, 3], [10, 20, 30]) == pytest.approx(0.0, abs=1e-7)
    assert drift.js_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    p, q = np.array([0.2, 0.8]), np.array([0.6, 0.4])
    m = (p + q) / 2
    by_hand = math.sqrt((stats.entropy(p, m, base=2) + stats.entropy(q, m, base=2)) / 2)
    assert drift.js_distance([20, 80], [60, 40]) == pytest.approx(by_hand)


# --- per feature ---------------------------------------------------------------------------


def test_numeric_feature_same_distribution_does_not_drift():
    rng = np.random.default_rng(3)
    profile = drift_profile(rng.normal(0, 1, 20000))
    result = drift.numeric_feature_drift("x", profile, pd.Series(rng.normal(0, 1, 720)), THRESHOLDS)
    assert not result["drifted"], result["reasons"]
    assert result["psi"] < 0.05


def test_numeric_feature_shift_drifts_with_psi_and_ks():
    rng = np.random.default_rng(4)
    profile = drift_profile(rng.normal(15, 5, 20000))
    result = drift.numeric_feature_drift("x", profile, pd.Series(rng.normal(0, 5, 720)), THRESHOLDS)
    assert result["drifted"]
    assert result["psi"] > 1 and result["p_value"] < 1e-10
    assert result["distance"] == pytest.approx(-3, abs=0.3)
    assert sum(result["bins"]["current"]) == 720


def test_large_but_negligible_shift_is_significant_yet_not_drift():
    # A million rows make a 0.03 sd shift "significant"; PSI says it does not matter.
    rng = np.random.default_rng(5)
    profile = drift_profile(rng.normal(0, 1, 1_000_000))
    result = drift.numeric_feature_drift("x", profile, pd.Series(rng.normal(0.03, 1, 1_000_000)), THRESHOLDS)
    assert result["p_value"] < THRESHOLDS.ks_pvalue
    assert result["psi"] < THRESHOLDS.psi
    assert not result["drifted"]


def test_missing_rate_change_makes_a_feature_drift():
    rng = np.random.default_rng(6)
    profile = drift_profile(rng.normal(0, 1, 5000))
    values = pd.Series(rng.normal(0, 1, 1000))
    values[:300] = np.nan
    result = drift.numeric_feature_drift("x", profile, values, THRESHOLDS)
    assert result["current_missing_rate"] == pytest.approx(0.3)
    assert result["drifted"] and "missing rate" in result["reasons"][0]


def test_entirely_missing_current_feature_is_reported_not_crashing():
    profile = drift_profile(np.arange(100.0))
    result = drift.numeric_feature_drift("x", profile, pd.Series([np.nan] * 50), THRESHOLDS)
    assert result["psi"] is None and result["current_missing_rate"] == 1.0 and result["drifted"]


def test_categorical_feature_uses_chi2_on_reference_counts():
    reference = {
        "type": "categorical",
        "count": 1000,
        "missing_rate": 0.0,
        "frequencies": {"a": 0.5, "b": 0.3, "c": 0.2},
    }
    same = pd.Series(["a"] * 50 + ["b"] * 30 + ["c"] * 20)
    result = drift.categorical_feature_drift("site", reference, same, THRESHOLDS)
    assert result["psi"] == pytest.approx(0.0, abs=1e-12) and not result["drifted"]
    shifted = pd.Series(["a"] * 100 + ["b"] * 100 + ["c"] * 600 + ["new"] * 200)
    result = drift.categorical_feature_drift("site", reference, shifted, THRESHOLDS)
    table = np.array([[500, 300, 200, 0], [100, 100, 600, 200]])
    expected = stats.chi2_contingency(table, correction=False)
    assert result["statistic"] == pytest.approx(expected.statistic)
    assert result["drifted"] and result["bins"]["labels"] == ["a", "b", "c", "new"]
    assert 0 < result["distance"] <= 1


def test_feature_drift_covers_every_configured_feature():
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({name: rng.normal(0, 1, 2000) for name in DATASET.features})
    profile = build_profile(frame, DATASET)
    results = drift.feature_drift(DATASET, profile, frame.iloc[:500], THRESHOLDS)
    assert [r["feature"] for r in results] == DATASET.features
    assert not any(r["drifted"] for r in results)


# --- scores, performance and the rule --------------------------------------------------------


def test_score_drift_uses_the_fixed_score_bins():
    reference = {"bin_edges": [i / 10 for i in range(11)], "bin_counts": [10] * 10, "mean": 0.5}
    result = drift.score_drift(reference, [0.05] * 50 + [0.95] * 50)
    assert result["bins"]["current"] == [50] + [0] * 8 + [50]
    expected = stats.chi2_contingency(np.array([[10] * 10, [50] + [0] * 8 + [50]]), correction=False)
    assert result["p_value"] == pytest.approx(expected.pvalue)
    assert drift.score_drift(reference, []) is None


def test_classification_metrics_by_hand():
    y = [1, 0, 1, 1, 0]
    p = [0.9, 0.2, 0.4, 0.7, 0.6]
    yhat = [1, 0, 0, 1, 1]
    m = drift.realized_metrics(y, p, yhat)
    # TP 2, FP 1, FN 1, TN 1
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert m["brier"] == pytest.approx((0.01 + 0.04 + 0.36 + 0.09 + 0.36) / 5)
    assert drift.realized_metrics([0, 0], [0.1, 0.2], [0, 0])["f1"] is None


def test_realized_performance_joins_the_label_that_arrived_later():
    time_col, source = DATASET.time_column, DATASET.label.source_column
    times = pd.date_range("2030-01-01", periods=10, freq="1h")
    rain = [0, 0, 0, 0, 1, 1, 0, 1, 0, 0]
    observations = pd.DataFrame({time_col: times, source: rain})
    from mlops.labels import add_label

    labeled = add_label(observations, DATASET)
    # Predictions for t0..t7: only t0..t5 have their t+4h observation in the data.
    predictions = pd.DataFrame({time_col: times[:8], "probability": [0.1, 0.8, 0.2, 0.9, 0.3, 0.2, 0.6, 0.1]})
    predictions["predicted_label"] = (predictions["probability"] >= 0.5).astype(int)
    result = drift.realized_performance(predictions, labeled, time_col, DATASET.label.name)
    truth = np.array(rain[4:10], dtype=float)  # label at t = rain at t+4h
    expected = drift.realized_metrics(truth, predictions["probability"][:6], predictions["predicted_label"][:6])
    assert result["n"] == 6 and result["n_predictions"] == 8
    assert result["accuracy"] == pytest.approx(expected["accuracy"])
    assert result["brier"] == pytest.approx(expected["brier"])
    assert [d["period"] for d in result["periods"]] == ["2030-01-01"]


def test_holdout_metrics_from_tags_accept_negated_brier():
    assert drift.holdout_metrics({"holdout_accuracy": "0.8", "holdout_neg_brier": "-0.12", "data_digest": "x"}) == {
        "accuracy": 0.8,
        "brier": 0.12,
    }


def test_holdout_metrics_from_the_json_tag_train_sets():
    tags = {"holdout_metrics": '{"accuracy": 0.8, "f1": 0.5, "brier": 0.12, "roc_auc": 0.9}', "family": "x"}
    assert drift.holdout_metrics(tags) == {"accuracy": 0.8, "f1": 0.5, "brier": 0.12}


def test_performance_drop_needs_enough_labels_and_a_margin():
    t = drift.Thresholds.from_config(CONFIG.drift, {"performance_drop": 0.1, "min_labeled_predictions": 100})
    holdout = {"accuracy": 0.85, "f1": 0.6, "brier": 0.10}
    realized = {"n": 500, "accuracy": 0.80, "f1": 0.45, "brier": 0.25}
    drops = drift.metric_drops("realized", realized, holdout, t.performance_drop, t.min_labeled)
    assert len(drops) == 2 and drops[0].startswith("realized f1") and drops[1].startswith("realized brier")
    assert drift.metric_drops("realized", {**realized, "n": 99}, holdout, t.performance_drop, t.min_labeled) == []


def test_dataset_rule_on_feature_share():
    features = [{"feature": f"f{i}", "drifted": i < 2} for i in range(7)]
    t = drift.Thresholds.from_config(CONFIG.drift, {"drifted_feature_share": 0.3})
    assert not drift.dataset_rule(features, [], t)["fired"]  # 2/7 < 30%
    features[2]["drifted"] = True
    rule = drift.dataset_rule(features, [], t)
    assert rule["fired"] and rule["drifted_features"] == ["f0", "f1", "f2"]
    assert drift.dataset_rule(features[:1], ["realized f1 dropped"], t)["fired"]


def test_threshold_overrides_by_config_key_and_unknown_key_refused():
    t = drift.Thresholds.from_config(CONFIG.drift, {"psi_threshold": 0.5, "ks_pvalue": None})
    assert t.psi == 0.5 and t.ks_pvalue == CONFIG.drift.ks_pvalue
    with pytest.raises(ValueError, match="bogus"):
        drift.Thresholds.from_config(CONFIG.drift, {"bogus": 1})


def test_compute_drift_result_is_json_serialisable():
    import json

    rng = np.random.default_rng(8)
    frame = pd.DataFrame({name: rng.normal(0, 1, 1000) for name in DATASET.features})
    frame[DATASET.time_column] = pd.date_range("2030-01-01", periods=1000, freq="1h")
    frame[DATASET.label.source_column] = rng.integers(0, 2, 1000)
    profile = build_profile(frame, DATASET, scores=rng.uniform(0, 1, 1000))
    predictions = pd.DataFrame(
        {DATASET.time_column: frame[DATASET.time_column], "probability": rng.uniform(0, 1, 1000)}
    )
    predictions["predicted_label"] = (predictions["probability"] > 0.5).astype(int)
    result = drift.compute_drift(
        DATASET, profile, frame.iloc[500:], THRESHOLDS, champion_predictions=predictions.iloc[500:]
    )
    json.dumps(drift.json_safe(result), allow_nan=False)
    assert result["performance"]["champion"]["n"] == 496 and not result["rule"]["fired"]


# --- season-aware reference ------------------------------------------------------------------


def seasonal_weather(start: str, periods: int, seed: int, offset: dict | None = None) -> pd.DataFrame:
    """Hourly data with a strong yearly cycle: temperature = 10 sin(2 pi month / 12) + noise,
    humidity follows the season too, the other features do not; offset adds to a feature."""
    rng = np.random.default_rng(seed)
    times = pd.date_range(start, periods=periods, freq="1h")
    season = np.sin(2 * np.pi * times.month.to_numpy() / 12)
    frame = pd.DataFrame({name: rng.normal(0, 1, periods) for name in DATASET.features})
    frame[DATASET.time_column] = times
    frame["Temperature_C"] = 10 * season + rng.normal(0, 1, periods)
    frame["Humidity"] = 0.7 - 0.15 * season + rng.normal(0, 0.03, periods)
    frame["Current_weather_condition"] = (rng.uniform(size=periods) < 0.2).astype(int)
    for name, delta in (offset or {}).items():
        frame[name] = frame[name] + delta
    return frame


SEASONAL_REFERENCE = seasonal_weather("2028-01-01", 2 * 365 * 24, seed=11)
SUMMER_WINDOW = ("2030-05-20", 30 * 24)  # late May to mid June: mostly June


def test_a_summer_month_against_two_years_does_not_drift_when_season_adjusted():
    profile = build_profile(SEASONAL_REFERENCE, DATASET)
    window = seasonal_weather(*SUMMER_WINDOW, seed=12)
    results = {r["feature"]: r for r in drift.feature_drift(DATASET, profile, window, THRESHOLDS)}
    # Against the whole reference the season alone looks like drift ...
    assert results["Temperature_C"]["raw"]["drifted"] and results["Humidity"]["raw"]["drifted"]
    assert results["Temperature_C"]["raw"]["psi"] > 1
    # ... against the same months of the reference it does not.
    assert not any(r["drifted"] for r in results.values()), {k: r["reasons"] for k, r in results.items()}
    assert results["Temperature_C"]["basis"] == "season-adjusted"
    assert results["Temperature_C"]["seasonal"]["psi"] < 0.05
    assert results["Temperature_C"]["seasonal"]["fallback_strata"] == []


def test_an_offset_in_one_feature_fires_on_that_feature_only():
    profile = build_profile(SEASONAL_REFERENCE, DATASET)
    window = seasonal_weather(*SUMMER_WINDOW, seed=12, offset={"Temperature_C": 4.0})
    result = drift.compute_drift(DATASET, profile, window, THRESHOLDS)
    drifted = [f["feature"] for f in result["features"] if f["drifted"]]
    assert drifted == ["Temperature_C"]
    assert result["season"]["key"] == "month" and set(result["season"]["window_shares"]) == {"5", "6"}


def test_one_broken_sensor_fires_the_rule_on_its_own_and_the_season_alone_does_not():
    profile = build_profile(SEASONAL_REFERENCE, DATASET)
    # The binned KS distance is a lower bound of the rows' (the reference's decile edges are
    # about 2.5 degrees apart around June): +4 sd moves 44% of the rows across one edge.
    severe = drift.Thresholds.from_config(CONFIG.drift, {"severe_ks": 0.4})
    clean = drift.compute_drift(DATASET, profile, seasonal_weather(*SUMMER_WINDOW, seed=12), severe)
    assert not clean["rule"]["fired"] and clean["rule"]["severe_features"] == []
    faulty = seasonal_weather(*SUMMER_WINDOW, seed=12, offset={"Temperature_C": 4.0})
    result = drift.compute_drift(DATASET, profile, faulty, severe)
    # 1 of 7 features is below the share (30%): only the single-feature rule can fire.
    assert result["rule"]["drifted_features"] == ["Temperature_C"]
    assert result["rule"]["fired"] and result["rule"]["severe_features"] == ["Temperature_C"]
    assert "severe shift (KS distance >= 0.4) in Temperature_C" in result["rule"]["reason"]
    off = drift.Thresholds.from_config(CONFIG.drift, {"severe_ks": "none"})
    assert not drift.compute_drift(DATASET, profile, faulty, off)["rule"]["fired"]


def test_a_severe_feature_must_have_drifted_and_be_numeric():
    t = drift.Thresholds.from_config(CONFIG.drift, {"severe_ks": 0.5})
    features = [
        {"feature": "a", "drifted": True, "test": "ks", "statistic": 0.5},
        {"feature": "b", "drifted": False, "test": "ks", "statistic": 0.9},  # p-value or PSI too small
        {"feature": "c", "drifted": True, "test": "chi2", "statistic": 80.0},  # chi-square, not a distance
        {"feature": "d", "drifted": True, "test": "ks", "statistic": 0.49},
    ]
    assert drift.severe_features(features, t) == ["a"]


def test_the_season_weighted_reference_is_the_window_mix_of_the_month_distributions():
    # Two months with disjoint values; a window 25% January, 75% July expects the same mix.
    times = pd.to_datetime(["2030-01-10"] * 400 + ["2030-07-10"] * 400)
    values = np.concatenate([np.linspace(0, 1, 400), np.linspace(10, 11, 400)])
    frame = pd.DataFrame({name: values for name in DATASET.features})
    frame[DATASET.time_column] = times
    reference = build_profile(frame, DATASET)["features"]["Temperature_C"]
    season = drift.Season("month", {"1": 0.25, "7": 0.75}, {"1": 400, "7": 400}, 100)
    strata = drift.by_stratum(reference["strata_bin_counts"], "month")
    weighted = drift.season_weighted(strata, reference["bin_counts"], season)
    expected = 0.25 * drift.proportions(strata["1"]) + 0.75 * drift.proportions(strata["7"])
    assert np.allclose(weighted["expected"], expected)
    # Kish: 1 / (0.25^2 / 400 + 0.75^2 / 400)
    assert weighted["effective_n"] == pytest.approx(1 / (0.0625 / 400 + 0.5625 / 400))
    # A stratum the reference does not cover, nor its neighbours, falls back to the whole reference.
    weighted = drift.season_weighted(strata, reference["bin_counts"], drift.Season("month", {"3": 1.0}, {}, 100))
    assert weighted["fallback"] == ["3"] and weighted["widened"] == {}
    assert np.allclose(weighted["expected"], drift.proportions(reference["bin_counts"]))
    # December: its neighbour January is covered.
    weighted = drift.season_weighted(strata, reference["bin_counts"], drift.Season("month", {"12": 1.0}, {}, 100))
    assert weighted["widened"] == {"12": ["1"]} and np.allclose(weighted["expected"], drift.proportions(strata["1"]))


def test_quarters_sum_months_and_a_thin_stratum_widens_to_its_neighbours_or_falls_back():
    profile = build_profile(SEASONAL_REFERENCE.iloc[: 24 * 100], DATASET)  # January to mid April
    window = seasonal_weather("2030-03-20", 30 * 24, seed=13)  # late March, most of April
    overrides = {"season_key": "quarter", "min_stratum_rows": 1000}
    result = drift.compute_drift(DATASET, profile, window, drift.Thresholds.from_config(CONFIG.drift, overrides))
    # 2028 is a leap year: Q1 has 91 days = 2184 reference rows, Q2 only 216 (< 1000).
    assert result["season"]["reference_rows"] == {"Q1": 2184, "Q2": 216}
    # Q2 is compared with its neighbours that have rows: Q1 (Q3 has none).
    assert result["season"]["widened_strata"] == {"Q2": ["Q1"]} and result["season"]["fallback_strata"] == []
    assert result["season"]["notes"] == [
        "reference has fewer than 1000 rows for quarter Q2: compared with quarter Q1 there"
    ]
    alone = drift.Thresholds.from_config(CONFIG.drift, {**overrides, "season_neighbours": False})
    result = drift.compute_drift(DATASET, profile, window, alone)
    assert result["season"]["fallback_strata"] == ["Q2"]
    assert "Q2" in result["season"]["notes"][0] and "whole reference" in result["season"]["notes"][0]


def test_an_old_profile_without_strata_compares_with_the_whole_reference():
    profile = build_profile(SEASONAL_REFERENCE.drop(columns=[DATASET.time_column]), DATASET)
    assert "strata" not in profile
    window = seasonal_weather(*SUMMER_WINDOW, seed=12)
    result = drift.compute_drift(DATASET, profile, window, THRESHOLDS)
    temperature = result["features"][0]
    assert temperature["drifted"] and temperature["seasonal"]["psi"] == pytest.approx(temperature["raw"]["psi"])
    assert "no calendar strata" in result["season"]["notes"][0]


def test_without_seasonal_adjustment_the_rule_uses_the_raw_shift():
    profile = build_profile(SEASONAL_REFERENCE, DATASET)
    window = seasonal_weather(*SUMMER_WINDOW, seed=12)
    raw = drift.Thresholds.from_config(CONFIG.drift, {"seasonal_adjustment": "false"})
    results = {r["feature"]: r for r in drift.feature_drift(DATASET, profile, window, raw)}
    assert results["Temperature_C"]["drifted"] and results["Temperature_C"]["basis"] == "raw"
    with pytest.raises(ValueError, match="season_key"):
        drift.Thresholds.from_config(CONFIG.drift, {"season_key": "week"})
