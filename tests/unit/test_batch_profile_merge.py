"""The vectorised sum of batch profiles: equal to adding the counts one by one, and re-binned
counts equal to binning the rows (within the stated KS bound)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops.config import DatasetConfig
from mlops.monitoring import batch_profile
from mlops.monitoring.profile import bin_counts

GRID = {"kind": "range", "low": -10.0, "high": 10.0, "bins": 64}
DATASET = DatasetConfig.model_validate(
    {
        "name": "merge",
        "columns": {
            "time": {"type": "datetime"},
            "x": {"type": "float", "min": -10, "max": 10},
            "flag": {"type": "int", "allowed": [0, 1]},
            "site": {"type": "string"},
        },
        "time_column": "time",
        "time_format": "%Y-%m-%d %H:%M:%S",
        "frequency": "1h",
        "label": {"name": "y", "source_column": "flag", "positive_values": ["1"], "steps_ahead": 1},
        "features": ["x", "flag", "site"],
    }
)


def one_by_one(entries: list[dict]) -> dict:
    """The sum as version 2 did it: a dict update per key and entry (the reference)."""
    values, cells, low, high = {}, {}, {}, {}
    for entry in entries:
        for value, n in zip(entry.get("values", []), entry.get("value_counts", []), strict=True):
            values[value] = values.get(value, 0) + n
        for i, cell in enumerate(entry.get("cells", [])):
            cells[cell] = cells.get(cell, 0) + entry["cell_counts"][i]
            low[cell] = min(low.get(cell, np.inf), entry["cell_min"][i])
            high[cell] = max(high.get(cell, -np.inf), entry["cell_max"][i])
    return {"values": values, "cells": cells, "low": low, "high": high}


@st.composite
def day_entries(draw) -> dict:
    """A range feature's day entry: exact values, or cells with their extremes."""
    numbers = draw(st.lists(st.floats(-12, 12, allow_nan=False), min_size=0, max_size=40))
    values = np.array(numbers, dtype=float)
    entry = {"missing": draw(st.integers(0, 3)), "sum": float(values.sum())}
    if draw(st.booleans()) or not len(values):
        distinct, counts = np.unique(values, return_counts=True)
        return {**entry, "values": distinct.tolist(), "value_counts": counts.tolist()}
    return {**entry, **batch_profile._cell_stats(values, GRID)}


@settings(max_examples=200, deadline=None)
@given(entries=st.lists(day_entries(), min_size=0, max_size=8))
def test_the_vectorised_sum_equals_adding_the_counts_one_by_one(entries):
    summed = batch_profile.sum_feature(entries, GRID)
    want = one_by_one(entries)
    assert dict(zip(summed["values"].tolist(), summed["value_counts"].tolist(), strict=True)) == want["values"]
    cells = summed.get("cells", np.zeros(0, int)).tolist()
    assert dict(zip(cells, summed.get("cell_counts", []), strict=True)) == want["cells"]
    assert dict(zip(cells, summed.get("cell_min", []), strict=True)) == want["low"]
    assert dict(zip(cells, summed.get("cell_max", []), strict=True)) == want["high"]
    assert summed["present"] == sum(want["values"].values()) + sum(want["cells"].values())
    assert summed["missing"] == sum(e["missing"] for e in entries)


def frame_of(rows_per_day: int, days: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = rows_per_day * days
    x = np.round(rng.normal(0, 4, n), int(rng.integers(0, 4)))  # some days exact, dense ones on cells
    x[rng.uniform(size=n) < 0.05] = np.nan
    return pd.DataFrame(
        {
            "time": pd.date_range("2030-01-30", periods=n, freq=pd.Timedelta(days=1) / rows_per_day),
            "x": x,
            "flag": rng.integers(0, 2, n).astype(float),
            "site": rng.choice(np.array(["north", "south", "east"]), n),
        }
    )


@settings(max_examples=30, deadline=None)
@given(
    rows_per_day=st.sampled_from([24, 300, 1000]),
    days=st.integers(1, 5),
    cuts=st.lists(st.floats(0, 1), max_size=6),
    seed=st.integers(0, 1000),
)
def test_window_totals_of_any_split_rebin_to_the_counts_of_the_rows(rows_per_day, days, cuts, seed):
    frame = frame_of(rows_per_day, days, seed)
    bounds = [0, *sorted(int(c * len(frame)) for c in cuts), len(frame)]
    parts = [
        batch_profile.batch_profile(frame.iloc[a:b], DATASET) for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    totals = batch_profile.window_totals(batch_profile.merge(parts))
    assert (
        totals["rows"] == len(frame) and totals["months"] == frame["time"].dt.month.astype(str).value_counts().to_dict()
    )
    present = frame["x"].dropna().to_numpy()
    edges = np.unique(np.quantile(present, np.linspace(0.1, 0.9, 9))).tolist()
    x = totals["features"]["x"]
    assert (x["present"], x["missing"]) == (len(present), len(frame) - len(present))
    counts, bound = batch_profile.rebin(x, GRID, edges)
    cdf_error = np.abs(np.cumsum(counts) - np.cumsum(bin_counts(present, edges))).max() / len(present)
    assert cdf_error <= bound + 1e-12
    if rows_per_day == 24:  # every day exact
        assert bound == 0.0 and counts.tolist() == bin_counts(present, edges)
    flag, _ = batch_profile.rebin(totals["features"]["flag"], {"kind": "values", "values": [0.0, 1.0]}, [0.0])
    assert flag.tolist() == bin_counts(frame["flag"].to_numpy(), [0.0])
    assert totals["features"]["site"]["counts"] == frame["site"].value_counts().to_dict()


def test_a_version_2_profile_is_read_as_the_profile_of_the_same_rows():
    frame = pd.DataFrame(
        {
            "time": pd.to_datetime(["2030-02-01 00:00", "2030-02-01 01:00", "2030-02-01 02:00"]),
            "x": [1.5, 1.5, np.nan],
            "flag": [0.0, 1.0, 3.0],  # 3: not allowed, kept as its value
            "site": ["north", "south", "north"],
        }
    )
    old = {
        "version": 2,
        "grids": batch_profile._grids(DATASET),
        "days": {
            "2030-02-01": {
                "rows": 3,
                "features": {
                    "x": {"missing": 1, "sum": 3.0, "counts": {"v1.5": 2}},
                    "flag": {"missing": 0, "sum": 4.0, "counts": {"0": 1, "1": 1, "v3.0": 1}},
                    "site": {"missing": 0, "counts": {"north": 2, "south": 1}},
                },
            }
        },
    }
    got, want = (batch_profile.window_totals(p) for p in (old, batch_profile.batch_profile(frame, DATASET)))
    for name in ("x", "flag"):
        for key in ("values", "value_counts"):
            assert got["features"][name][key].tolist() == want["features"][name][key].tolist(), (name, key)
    assert got["features"]["site"]["counts"] == want["features"]["site"]["counts"] == {"north": 2, "south": 1}
