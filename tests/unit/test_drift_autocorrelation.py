"""Autocorrelated rows: the design effect estimated on the reference and the tests' effective sizes.

Known answers: the integrated autocorrelation time of an AR(1) process is (1 + rho) / (1 - rho)
(Wilks, Statistical Methods in the Atmospheric Sciences, eq. 5.12); the indicator 1{x <= z}
of a Gaussian AR(1) series has the lag-k autocorrelation (Phi2(z, z; rho^k) - Phi(z)^2) /
(Phi(z)(1 - Phi(z))); a two-state Markov chain's indicator has lag-k autocorrelation lambda^k
(lambda = 1 - p01 - p10). Before the correction, an AR(1) series without a shift "drifted" at
p < 0.01 in most seeds.
"""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.signal import lfilter

from mlops.config import load_config
from mlops.monitoring import autocorrelation, batch_profile, drift
from mlops.monitoring.profile import build_profile

CONFIG = load_config(environ={})
DATASET = CONFIG.dataset
TIME = DATASET.time_column
ONE = DATASET.model_copy(update={"features": ["Temperature_C"]})
THRESHOLDS = drift.Thresholds.from_config(CONFIG.drift)
IID = drift.Thresholds.from_config(CONFIG.drift, {"autocorrelation": "false"})


def ar1(n: int, rho: float, rng) -> np.ndarray:
    """A stationary Gaussian AR(1) series of unit variance."""
    noise = rng.normal(0, math.sqrt(1 - rho**2), n)
    return lfilter([1.0], [1.0, -rho], noise, zi=[rho * rng.normal()])[0]


def hourly(start: str, n: int, values) -> pd.DataFrame:
    return pd.DataFrame({TIME: pd.date_range(start, periods=n, freq="1h"), "Temperature_C": values})


def indicator_tau(rho: float, z: float) -> float:
    """The integrated autocorrelation time of 1{x <= z} for a unit Gaussian AR(1) series."""
    p = stats.norm.cdf(z)
    tau, k = 1.0, 1
    while rho**k > 1e-5:
        r = rho**k
        joint = stats.multivariate_normal(mean=[0, 0], cov=[[1, r], [r, 1]]).cdf([z, z])
        tau += 2 * (joint - p * p) / (p * (1 - p))
        k += 1
    return tau


# --- the estimator ----------------------------------------------------------------------------


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9, 0.97])
def test_integrated_time_of_the_exact_ar1_autocorrelation_is_the_textbook_value(rho):
    lags = np.arange(5000)
    rho_k = rho**lags
    tau = autocorrelation.integrated_time(rho_k, np.full(len(lags), 10_000.0))
    assert tau == pytest.approx((1 + rho) / (1 - rho), rel=0.01)


@settings(max_examples=100, deadline=None)
@given(low=st.floats(-0.9, 0.99), high=st.floats(-0.9, 0.99))
def test_integrated_time_grows_with_the_autocorrelation_and_the_effective_size_falls(low, high):
    low, high = sorted((low, high))
    lags, pairs = np.arange(5000), np.full(5000, 10_000.0)
    tau_low = autocorrelation.integrated_time(low**lags, pairs)
    tau_high = autocorrelation.integrated_time(high**lags, pairs)
    assert 1.0 <= tau_low <= tau_high + 1e-9
    assert 1 <= drift.effective_size(720, tau_high) <= drift.effective_size(720, tau_low) <= 720


def test_design_effect_of_a_gaussian_ar1_series_matches_the_theory_of_its_indicators():
    # Three years of hourly AR(1) with rho 0.9, centred per month as profiles do.
    rng = np.random.default_rng(7)
    n, rho = 3 * 8760, 0.9
    frame = hourly("2028-01-01", n, ar1(n, rho, rng))
    estimate = build_profile(frame, ONE)["features"]["Temperature_C"]["autocorrelation"]
    edges = stats.norm.ppf(np.arange(1, 10) / 10)
    theory = np.mean([indicator_tau(rho, z) for z in edges])  # 12.1
    assert estimate["design_effect"] == pytest.approx(theory, rel=0.15)
    assert estimate["lag1"] == pytest.approx(rho, abs=0.02) and estimate["frequency"] == "1h"


def test_design_effect_of_a_two_state_markov_chain_is_its_textbook_value():
    # P(0 -> 1) = 0.05, P(1 -> 0) = 0.15: lambda = 0.8, tau = 1.8 / 0.2 = 9 for both categories.
    rng = np.random.default_rng(3)
    n, states = 4 * 8760, np.empty(4 * 8760, dtype=int)
    states[0], draws = 0, rng.uniform(size=n)
    for t in range(1, n):
        flip = 0.05 if states[t - 1] == 0 else 0.15
        states[t] = 1 - states[t - 1] if draws[t] < flip else states[t - 1]
    dataset = DATASET.model_copy(update={"features": ["Location"]})  # a string column: categorical
    frame = pd.DataFrame({TIME: pd.date_range("2028-01-01", periods=n, freq="1h"), "Location": states.astype(str)})
    estimate = build_profile(frame, dataset)["features"]["Location"]["autocorrelation"]
    assert estimate["design_effect"] == pytest.approx(9.0, rel=0.15)


def test_independent_rows_have_a_design_effect_near_one():
    rng = np.random.default_rng(5)
    frame = hourly("2028-01-01", 8760, rng.normal(size=8760))
    assert 1.0 <= build_profile(frame, ONE)["features"]["Temperature_C"]["autocorrelation"]["design_effect"] < 1.15


def test_a_constant_feature_has_no_estimate_and_the_profile_stays_valid_json():
    import json

    frame = hourly("2028-01-01", 2000, np.full(2000, 3.0))
    estimate = build_profile(frame, ONE)["features"]["Temperature_C"]["autocorrelation"]
    assert estimate["design_effect"] is None and estimate["lag1"] is None
    json.dumps(build_profile(frame, ONE), allow_nan=False)


def test_lag_one_is_one_period_of_the_frequency_and_a_gap_is_no_neighbour():
    times = pd.to_datetime(["2030-01-01", "2030-01-02", "2030-01-05"])
    assert autocorrelation.grid_positions(times, "1D").tolist() == [0, 1, 4]
    assert autocorrelation.grid_positions(times, "12h").tolist() == [0, 2, 8]
    # Every other hour present: no two rows one period apart, so no estimate (independent rows).
    rng = np.random.default_rng(2)
    frame = hourly("2028-01-01", 2 * 4000, ar1(2 * 4000, 0.9, rng)).iloc[::2]
    estimate = build_profile(frame, ONE)["features"]["Temperature_C"]["autocorrelation"]
    assert estimate["design_effect"] is None and estimate["pairs_lag1"] == 0
    # The same rows at their own frequency (2h) are neighbours again: rho 0.81 one period apart.
    two_hourly = ONE.model_copy(update={"frequency": "2h"})
    estimate = build_profile(frame, two_hourly)["features"]["Temperature_C"]["autocorrelation"]
    assert estimate["lag1"] == pytest.approx(0.81, abs=0.03) and estimate["design_effect"] > 3


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_the_estimate_depends_on_the_times_not_on_the_row_order(seed):
    rng = np.random.default_rng(seed)
    frame = hourly("2028-01-01", 2000, ar1(2000, 0.8, rng))
    shuffled = frame.sample(frac=1.0, random_state=seed)
    first = build_profile(frame, ONE)["features"]["Temperature_C"]["autocorrelation"]
    second = build_profile(shuffled, ONE)["features"]["Temperature_C"]["autocorrelation"]
    assert second["design_effect"] == pytest.approx(first["design_effect"], rel=1e-9)


# --- the tests' effective sizes ----------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(n=st.floats(1, 1e7), low=st.floats(0, 1e4), high=st.floats(0, 1e4))
def test_effective_size_lies_in_one_to_n_and_falls_as_the_design_effect_grows(n, low, high):
    low, high = sorted((low, high))
    small, large = drift.effective_size(n, low), drift.effective_size(n, high)
    assert 1 - 1e-9 <= large <= small <= n * (1 + 1e-12)
    assert drift.effective_size(n, 1.0) == n and drift.effective_size(n, float("nan")) == n


@settings(max_examples=100, deadline=None)
@given(
    counts=st.lists(st.integers(0, 500), min_size=3, max_size=10),
    shares=st.lists(st.integers(1, 100), min_size=3, max_size=10),
    low=st.floats(1, 50),
    high=st.floats(1, 50),
)
def test_a_larger_design_effect_never_makes_a_test_more_significant(counts, shares, low, high):
    k = min(len(counts), len(shares))
    counts, shares = counts[:k], np.array(shares[:k], dtype=float)
    low, high = sorted((low, high))
    d_low, p_low = drift.ks_against_expected(shares / shares.sum(), 5000, counts, low)
    d_high, p_high = drift.ks_against_expected(shares / shares.sum(), 5000, counts, high)
    assert d_low == d_high and p_high >= p_low - 1e-12
    _, q_low = drift.chi2_homogeneity(shares * 50, counts, low)
    _, q_high = drift.chi2_homogeneity(shares * 50, counts, high)
    assert q_high >= q_low - 1e-12


def test_chi_square_divided_by_the_design_effect_rao_scott():
    plain, _ = drift.chi2_homogeneity([30, 70], [50, 50])
    statistic, pvalue = drift.chi2_homogeneity([30, 70], [50, 50], 4.0)
    assert statistic == pytest.approx(plain / 4) and pvalue == pytest.approx(stats.chi2.sf(plain / 4, df=1))


def test_ks_with_a_design_effect_is_the_ks_of_the_effective_sizes():
    # n / d and m / d rows: the two-sample effective size n m / (n + m) / d.
    statistic, pvalue = drift.ks_from_bins([100] * 10, [50] * 5 + [150] * 5, 10.0)
    expected = stats.kstwo.sf(statistic, round(1000 * 1000 / 2000 / 10))
    assert pvalue == pytest.approx(expected)


# --- the drift verdicts -------------------------------------------------------------------------


def _window_test(rho: float, shift: float, seed: int, thresholds, years: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    profile = build_profile(hourly("2028-01-01", years * 8760, ar1(years * 8760, rho, rng)), ONE)
    window = hourly("2029-03-01", 720, ar1(720, rho, rng) + shift)
    return drift.feature_drift(ONE, profile, window, thresholds)[0]


def test_an_autocorrelated_series_without_a_shift_does_not_drift():
    # AR(1) with rho 0.95 (tau about 25 for the deciles): a year of reference, a 30-day window
    # of the same process. Before the correction p < 0.01 in about 80% of the seeds.
    results = [_window_test(0.95, 0.0, seed, THRESHOLDS) for seed in range(40)]
    significant = np.mean([r["p_value"] < THRESHOLDS.ks_pvalue for r in results])
    assert significant <= 0.05 and np.mean([r["drifted"] for r in results]) <= 0.05
    assert 15 < np.median([r["design_effect"] for r in results]) < 40
    # The same windows counted as independent rows: "significant" most of the time.
    assert np.mean([_window_test(0.95, 0.0, seed, IID)["p_value"] < 0.01 for seed in range(10)]) >= 0.5


def test_a_one_sd_shift_of_an_autocorrelated_series_still_drifts():
    results = [_window_test(0.9, 1.0, seed, THRESHOLDS, years=2) for seed in range(20)]
    assert np.mean([r["drifted"] for r in results]) >= 0.9, [round(r["p_value"], 4) for r in results]


def test_independent_rows_keep_their_verdicts_and_nearly_their_p_values():
    rng = np.random.default_rng(4)
    profile = build_profile(hourly("2028-01-01", 8760, rng.normal(size=8760)), ONE)
    for shift in (0.0, 0.2, 0.5):
        window = hourly("2029-03-01", 720, rng.normal(size=720) + shift)
        corrected = drift.feature_drift(ONE, profile, window, THRESHOLDS)[0]
        plain = drift.feature_drift(ONE, profile, window, IID)[0]
        assert corrected["effective_n_current"] >= 0.87 * 720 and corrected["drifted"] == plain["drifted"]
        assert corrected["p_value"] >= plain["p_value"]
        if plain["p_value"] < 1e-3:
            # log p is about proportional to the effective size: at most 1 / 0.87 of it.
            assert math.log10(max(corrected["p_value"], 1e-300)) <= 0.87 * math.log10(max(plain["p_value"], 1e-300))


def test_an_old_profile_or_the_switch_off_counts_rows_as_independent():
    rng = np.random.default_rng(6)
    profile = build_profile(hourly("2028-01-01", 8760, ar1(8760, 0.95, rng)), ONE)
    window = hourly("2029-03-01", 720, ar1(720, 0.95, rng))
    old = {**profile, "features": {"Temperature_C": dict(profile["features"]["Temperature_C"])}}
    del old["features"]["Temperature_C"]["autocorrelation"]
    from_old = drift.feature_drift(ONE, old, window, THRESHOLDS)[0]
    switched_off = drift.feature_drift(ONE, profile, window, IID)[0]
    assert from_old["design_effect"] == switched_off["design_effect"] == 1.0
    for side in ("raw", "seasonal"):
        assert from_old[side]["p_value"] == switched_off[side]["p_value"]
    assert drift.feature_drift(ONE, profile, window, THRESHOLDS)[0]["design_effect"] > 10
    summary = drift.autocorrelation_summary(old, [from_old], THRESHOLDS)
    assert summary["design_effects"] == {"Temperature_C": 1.0}
    assert "no autocorrelation estimate for Temperature_C" in summary["notes"][0]
    assert "is off" in drift.autocorrelation_summary(profile, [switched_off], IID)["notes"][0]


def test_drift_from_batch_profiles_uses_the_same_design_effect_as_drift_from_rows():
    rng = np.random.default_rng(8)
    reference = hourly("2028-01-01", 2 * 8760, ar1(2 * 8760, 0.95, rng) * 5 + 10)
    profile = build_profile(reference, ONE)
    window = hourly("2030-05-01", 720, ar1(720, 0.95, rng) * 5 + 12)
    merged = batch_profile.merge([batch_profile.batch_profile(window.iloc[a : a + 240], ONE) for a in (0, 240, 480)])
    from_rows = drift.feature_drift(ONE, profile, window, THRESHOLDS)[0]
    from_profiles = drift.feature_drift_from_profile(ONE, profile, merged, THRESHOLDS)[0][0]
    assert from_profiles["design_effect"] == from_rows["design_effect"] > 10
    for side in ("raw", "seasonal"):
        assert from_profiles[side]["p_value"] == pytest.approx(from_rows[side]["p_value"], rel=0.05)
