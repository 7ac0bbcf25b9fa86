"""The reference profile's bins and counts, checked against numpy on known data."""

import numpy as np
import pandas as pd
import pytest

from mlops.config import load_config
from mlops.monitoring.profile import bin_counts, build_profile

DATASET = load_config(environ={}).dataset


def test_bin_counts_uses_right_closed_open_ended_bins():
    assert bin_counts(np.array([-5.0, 1.0, 1.5, 2.0, 99.0]), [1.0, 2.0]) == [2, 2, 1]


def test_profile_of_uniform_feature_has_equal_decile_bins_and_missing_rate():
    n = 1000
    frame = pd.DataFrame({name: np.arange(n, dtype=float) for name in DATASET.features})
    frame.loc[:99, "Humidity"] = np.nan
    profile = build_profile(frame, DATASET, scores=np.linspace(0, 1, n))
    temp = profile["features"]["Temperature_C"]
    assert temp["missing_rate"] == 0.0
    assert sum(temp["bin_counts"]) == n
    assert max(temp["bin_counts"]) - min(temp["bin_counts"]) <= 1
    assert abs(profile["features"]["Humidity"]["missing_rate"] - 0.1) < 1e-12
    assert sum(profile["scores"]["bin_counts"]) == n


def test_profile_quantiles_and_bins_equal_numpy_on_unsorted_data_with_ties():
    from mlops.monitoring.profile import QUANTILES, sorted_quantiles

    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(5, 2, 9973), np.zeros(500), rng.integers(0, 3, 400)])
    rng.shuffle(values)
    qs = np.linspace(0, 1, 101)
    assert np.array_equal(sorted_quantiles(np.sort(values), qs), np.quantile(values, qs))
    frame = pd.DataFrame({name: values for name in DATASET.features})
    profile = build_profile(frame, DATASET)["features"]["Temperature_C"]
    edges = np.unique(np.quantile(values, np.linspace(0, 1, 11)[1:-1]))
    assert profile["bin_edges"] == edges.tolist()
    assert profile["bin_counts"] == bin_counts(values, edges.tolist())
    assert profile["quantiles"] == {str(q): float(np.quantile(values, q)) for q in QUANTILES}
    assert (profile["min"], profile["max"]) == (values.min(), values.max())


# --- batch profiles: mergeable, and drift from them matches drift from rows --------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mlops.monitoring import batch_profile, drift  # noqa: E402

CONFIG = load_config(environ={})


def hourly(start: str, hours: int, seed: int, warm: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    times = pd.date_range(start, periods=hours, freq="1h")
    season = np.sin(2 * np.pi * times.month.to_numpy() / 12)
    frame = pd.DataFrame(
        {
            DATASET.time_column: times,
            "Temperature_C": 10 * season + rng.normal(0, 3, hours) + warm,
            "Humidity": np.clip(0.7 - 0.1 * season + rng.normal(0, 0.1, hours), 0, 1),
            "Wind_speed_kmph": rng.gamma(2.0, 6.0, hours),
            "Wind_bearing_degrees": rng.integers(0, 361, hours).astype(float),
            "Visibility_km": np.clip(rng.normal(12, 3, hours), 0, 100),
            "Pressure_millibars": rng.normal(1013, 8, hours),
            "Current_weather_condition": (rng.uniform(size=hours) < 0.2).astype(float),
        }
    )
    frame.loc[rng.uniform(size=hours) < 0.02, "Visibility_km"] = np.nan
    return frame


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=299), max_size=5, unique=True), seed=st.integers(0, 10))
def test_the_merge_of_any_split_into_batches_is_the_profile_of_all_rows(cuts, seed):
    frame = hourly("2030-01-30", 300, seed)
    bounds = [0, *sorted(cuts), len(frame)]
    parts = [
        batch_profile.batch_profile(frame.iloc[a:b], DATASET) for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    whole = batch_profile.batch_profile(frame, DATASET)
    merged = batch_profile.merge(parts)
    assert merged["days"].keys() == whole["days"].keys()
    for day, stats in whole["days"].items():
        got = merged["days"][day]
        assert got["rows"] == stats["rows"]
        for name, feature in stats["features"].items():
            grid = whole["grids"][name]
            summed, want = (batch_profile.sum_feature([f], grid) for f in (got["features"][name], feature))
            assert summed.keys() == want.keys()
            for key, value in want.items():
                assert np.asarray(summed[key]).tolist() == pytest.approx(np.asarray(value).tolist()), (name, key)


def test_drift_from_merged_batch_profiles_matches_drift_from_rows_within_the_stated_bound():
    reference_rows = hourly("2028-01-01", 2 * 365 * 24, seed=1)
    profile = build_profile(reference_rows, DATASET)
    window = hourly("2030-05-20", 30 * 24, seed=2, warm=2.0)
    batches = [window.iloc[:200], window.iloc[200:500], window.iloc[500:]]
    merged = batch_profile.merge([batch_profile.batch_profile(b, DATASET) for b in batches])
    thresholds = drift.Thresholds.from_config(CONFIG.drift)
    from_rows = drift.feature_drift(DATASET, profile, window, thresholds)
    from_profiles, season = drift.feature_drift_from_profile(DATASET, profile, merged, thresholds)
    assert season.window_shares == pytest.approx({"5": 12 * 24 / 720, "6": 1 - 12 * 24 / 720})
    for rows, profiled in zip(from_rows, from_profiles, strict=True):
        name, bound = rows["feature"], profiled["ks_error_bound"]
        assert bound < 0.01, name
        for side in ("raw", "seasonal"):
            assert abs(profiled[side]["statistic"] - rows[side]["statistic"]) <= bound + 1e-12, (name, side)
            assert profiled[side]["psi"] == pytest.approx(rows[side]["psi"], abs=0.02), (name, side)
        assert profiled["drifted"] == rows["drifted"], name
        assert profiled["current_missing_rate"] == pytest.approx(rows["current_missing_rate"])
        assert profiled["current_mean"] == pytest.approx(rows["current_mean"])
    # Discrete values are exact: the rain flag's counts equal those from rows.
    rain = [r for r in from_profiles if r["feature"] == "Current_weather_condition"][0]
    assert rain["ks_error_bound"] == 0.0 and rain["bins"] == from_rows[-1]["bins"]
    assert [r["feature"] for r in from_profiles if r["drifted"]] == ["Temperature_C"]


def test_a_profile_window_takes_whole_days_and_grids_must_agree():
    frame = hourly("2030-03-01", 72, seed=3)
    profile = batch_profile.batch_profile(frame, DATASET)
    assert list(batch_profile.merge([profile], "2030-03-02", "2030-03-02")["days"]) == ["2030-03-02"]
    other = {**profile, "grids": {**profile["grids"], "Humidity": {"kind": "range", "low": 0, "high": 100, "bins": 10}}}
    with pytest.raises(ValueError, match="different grids"):
        batch_profile.merge([profile, other])
    no_range = DATASET.model_copy(
        update={
            "columns": {**DATASET.columns, "Humidity": DATASET.columns["Humidity"].model_copy(update={"min": None})}
        }
    )
    assert batch_profile.profile_gaps(no_range) == ["Humidity"]


def test_a_feature_without_a_grid_is_read_from_rows_and_the_result_says_so():
    no_range = DATASET.model_copy(
        update={
            "columns": {**DATASET.columns, "Humidity": DATASET.columns["Humidity"].model_copy(update={"min": None})}
        }
    )
    profile = build_profile(hourly("2028-01-01", 365 * 24, seed=1), no_range)
    window = hourly("2030-05-20", 30 * 24, seed=2)
    merged = batch_profile.batch_profile(window, no_range)
    thresholds = drift.Thresholds.from_config(CONFIG.drift)
    with pytest.raises(ValueError, match="'Humidity' has no fixed grid"):
        drift.feature_drift_from_profile(no_range, profile, merged, thresholds)
    result = drift.compute_drift(no_range, profile, window, thresholds, merged=merged)
    sources = {f["feature"]: f["source"] for f in result["features"]}
    assert sources.pop("Humidity") == "rows" and set(sources.values()) == {"batch profiles"}
    from_rows = {f["feature"]: f for f in drift.compute_drift(no_range, profile, window, thresholds)["features"]}
    humidity = [f for f in result["features"] if f["feature"] == "Humidity"][0]
    assert humidity["psi"] == from_rows["Humidity"]["psi"]


@pytest.mark.parametrize("rows_per_day", [24, 2000])  # exact values / grid cells with their extremes
def test_discrete_values_at_the_reference_edges_are_rebinned_exactly(rows_per_day):
    # Visibility in km converted from miles: a few repeated values, which become decile edges.
    rng = np.random.default_rng(4)
    discrete = np.array([1.932, 5.4579, 9.982, 10.2557, 16.1])
    reference = hourly("2028-01-01", 2000, seed=5).assign(Visibility_km=rng.choice(discrete, 2000))
    edges = build_profile(reference, DATASET)["features"]["Visibility_km"]["bin_edges"]
    assert set(np.round(edges, 6)) & set(discrete)
    times = pd.date_range("2030-06-01", periods=10 * rows_per_day, freq=pd.Timedelta(days=1) / rows_per_day)
    window = hourly("2030-06-01", len(times), seed=6).assign(**{DATASET.time_column: times})
    # Mostly the discrete values, plus (for the grid case) continuous values just above each.
    values = rng.choice(discrete, len(times))
    if rows_per_day > 256:
        values = np.where(rng.uniform(size=len(times)) < 0.5, values, values + rng.uniform(0.001, 0.01, len(times)))
    window["Visibility_km"] = values
    totals = batch_profile.window_totals(batch_profile.batch_profile(window, DATASET))["features"]["Visibility_km"]
    counts, bound = batch_profile.rebin(totals, {"kind": "range", "low": 0.0, "high": 100.0, "bins": 4096}, edges)
    from_rows = bin_counts(values, edges)
    # Every difference is within the stated bound (0 when no cell holds values on both sides of an edge).
    assert np.abs(np.cumsum(counts) - np.cumsum(from_rows)).max() / len(values) <= bound + 1e-12
    if rows_per_day <= 256:
        assert bound == 0.0 and counts.tolist() == list(from_rows)
