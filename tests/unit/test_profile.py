"""The reference profile's bins and counts, checked against numpy on known data."""

import numpy as np
import pandas as pd

from mlops.config import load_config
from mlops.profile import bin_counts, build_profile

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
    from mlops.profile import QUANTILES, sorted_quantiles

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
