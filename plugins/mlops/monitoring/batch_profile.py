"""Small mergeable profiles of loaded batches, so drift_check can merge counts instead of re-reading rows.

A batch profile holds, per calendar day of the time column: the row count and, per feature,
the missing count, the sum of the values (for the mean) and the counts on a fixed grid that
does not depend on any model, so a new champion needs no re-profiling:

* numeric features with a configured physical range [min, max] (dataset.columns): GRID_BINS
  equal-width cells over the range, plus one cell below and one above it;
* numeric features with a set of allowed values (and no range): a count per value (exact);
* string features: a count per category (exact).

Counts are stored sparse, as parallel lists per feature and day (version 3): "values" and
"value_counts" (exact values), "cells", "cell_counts", "cell_min" and "cell_max" (range
cells with the smallest and largest value in each), "categories" and "category_counts".
A day with at most EXACT_VALUES distinct values of a range feature (any day of hourly data)
stores its values' exact counts instead of cells, so a month of hourly data profiles to a few
thousand numbers whatever its rows, and is exact. Profiles add up: merge() of the profiles of
any split of rows equals the profile of all of them (a property test checks it), and
window_totals() sums a window in one grouped numpy sum per feature (np.bincount over the
grid's cells, np.unique over exact values), not a dict update per cell and day.

From a merged window, rebin() re-bins the grid onto the champion's decile edges. A cell
whose values all lie on one side of an edge is re-binned exactly by its smallest and largest
value (discrete values, common in sensor data, are often the edges themselves). A cell with
values on both sides of a reference edge cannot be split: its rows go to the bin of the
middle of its values, and the empirical CDF at that edge can be off by at most that cell's
share of rows. The largest such share is returned as ks_error_bound: the binned KS statistic
from a profile is within ks_error_bound of the one from rows (0 for exact cells), and PSI
moves by the same order. With 4096 cells a cell of temperature spans 0.03 degrees C.
A numeric feature with neither range nor allowed values has no fixed grid: the caller reads
its rows (profile_gaps() names such features).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops.config import ColumnSpec, DatasetConfig

GRID_BINS = 4096
# A day's values of a range feature are counted exactly (its "values") up to this many
# distinct values, else on the grid's cells.
EXACT_VALUES = 256
VERSION = 3  # 2: {key: count} dicts; 3: parallel lists, summed with numpy


def grid_of(spec: ColumnSpec) -> dict | None:
    """The fixed grid of a column: range cells, allowed values, categories, or None (no grid)."""
    if spec.type == "string":
        return {"kind": "categories"}
    if spec.min is not None and spec.max is not None and spec.max > spec.min:
        return {"kind": "range", "low": float(spec.min), "high": float(spec.max), "bins": GRID_BINS}
    if spec.allowed:
        return {"kind": "values", "values": sorted(float(v) for v in spec.allowed)}
    return None


def profile_gaps(dataset: DatasetConfig) -> list[str]:
    """Features a batch profile cannot hold (no range, allowed values or string type)."""
    return [name for name in dataset.features if grid_of(dataset.columns[name]) is None]


def _cells(values: np.ndarray, grid: dict) -> np.ndarray:
    """Range cell of every present value: 0 (below low), 1..bins, bins + 1 (at or above high)."""
    width = (grid["high"] - grid["low"]) / grid["bins"]
    return np.clip(np.floor((values - grid["low"]) / width).astype(np.int64) + 1, 0, grid["bins"] + 1)


def batch_profile(frame: pd.DataFrame, dataset: DatasetConfig) -> dict:
    """The profile of a batch: per day (YYYY-MM-DD of the time column) rows and per-feature counts.

    frame: the batch's rows with the configured types (time column datetime64). Raises
    ValueError naming the first row whose time is missing. Features without a grid are
    left out (profile_gaps).
    """
    times = pd.to_datetime(frame[dataset.time_column])
    if times.isna().any():
        raise ValueError(f"row {int(np.flatnonzero(times.isna().to_numpy())[0])}: no {dataset.time_column}")
    day_labels, day_codes = np.unique(times.dt.strftime("%Y-%m-%d").to_numpy(), return_inverse=True)
    days = {day: {"rows": int(n), "features": {}} for day, n in zip(day_labels, np.bincount(day_codes), strict=True)}
    for name in dataset.features:
        grid = grid_of(dataset.columns[name])
        if grid is None:
            continue
        for day, stats in _feature_by_day(frame[name], grid, day_codes, day_labels).items():
            days[day]["features"][name] = stats
    return {"version": VERSION, "grids": _grids(dataset), "days": days}


def _grids(dataset: DatasetConfig) -> dict:
    return {name: grid_of(dataset.columns[name]) for name in dataset.features if grid_of(dataset.columns[name])}


def _feature_by_day(values: pd.Series, grid: dict, day_codes: np.ndarray, day_labels: np.ndarray) -> dict:
    if grid["kind"] == "categories":
        present = values.notna().to_numpy()
        data = values[present].astype(str).to_numpy()
    else:
        numeric = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        present = ~np.isnan(numeric)
        data = numeric[present]
    codes = day_codes[present]
    missing = np.bincount(day_codes[~present], minlength=len(day_labels))
    out = {}
    for code, day in enumerate(day_labels):
        mine = data[codes == code]
        stats = {"missing": int(missing[code])}
        if grid["kind"] == "categories":
            categories, counts = np.unique(mine, return_counts=True)
            stats.update(categories=categories.tolist(), category_counts=counts.tolist())
        else:
            stats["sum"] = float(mine.sum())
            values, counts = np.unique(mine, return_counts=True)
            if grid["kind"] == "values" or len(values) <= EXACT_VALUES:
                # Few distinct values (a day of hourly data has at most 24): exact counts, no cells.
                stats.update(values=values.tolist(), value_counts=counts.tolist())
            else:
                stats.update(_cell_stats(mine, grid))
        out[day] = stats
    return out


def _cell_stats(numbers: np.ndarray, grid: dict) -> dict:
    """Range cells of non-empty numbers: the occupied cells, their counts, smallest and largest value."""
    cells = _cells(numbers, grid)
    order = np.lexsort((numbers, cells))  # by cell, then by value
    cells, numbers = cells[order], numbers[order]
    starts = np.flatnonzero(np.r_[True, cells[1:] != cells[:-1]])
    ends = np.r_[starts[1:], len(cells)]
    return {
        "cells": cells[starts].tolist(),
        "cell_counts": (ends - starts).tolist(),
        "cell_min": numbers[starts].tolist(),
        "cell_max": numbers[ends - 1].tolist(),
    }


def upgraded(profile: dict) -> dict:
    """A profile in the current format: version 2's {key: count} dicts become version 3's lists.

    Version 2 keys: a range cell ("12"), an exact value ("v3.5"), the index of an allowed
    value ("2"), or a category. Raises ValueError for an unknown version.
    """
    if profile.get("version") == VERSION:
        return profile
    if profile.get("version") != 2:
        raise ValueError(f"batch profile version {profile.get('version')!r} is not known; re-profile the batches")
    days = {
        day: {
            "rows": stats["rows"],
            "features": {
                name: _upgraded_feature(old, profile["grids"][name]) for name, old in stats["features"].items()
            },
        }
        for day, stats in profile["days"].items()
    }
    return {"version": VERSION, "grids": profile["grids"], "days": days}


def _upgraded_feature(old: dict, grid: dict) -> dict:
    """One feature's day entry of a version 2 profile in version 3's lists."""
    new = {"missing": old["missing"], **({"sum": old["sum"]} if "sum" in old else {})}
    counts = old["counts"]
    if grid["kind"] == "categories":
        return {**new, "categories": list(counts), "category_counts": list(counts.values())}
    exact = [k for k in counts if k.startswith("v") or grid["kind"] == "values"]
    values = [float(k[1:]) if k.startswith("v") else grid["values"][int(k)] for k in exact]
    new.update(values=values, value_counts=[counts[k] for k in exact])
    cells = [k for k in counts if not (k.startswith("v") or grid["kind"] == "values")]
    if cells:
        new.update(
            cells=[int(k) for k in cells],
            cell_counts=[counts[k] for k in cells],
            cell_min=[old["min"][k] for k in cells],
            cell_max=[old["max"][k] for k in cells],
        )
    return new


def merge(profiles: list[dict], start_day: str | None = None, end_day: str | None = None) -> dict:
    """One profile of the days in [start_day, end_day] (YYYY-MM-DD, inclusive; None: open) of all profiles.

    The result shares the day entries of its inputs that only one input has: read it, do not
    change it. A day several profiles hold (a day split over batches) is summed like a window
    (sum_feature: its lists become numpy arrays, and it gets "present"). Raises ValueError when the profiles were made on different grids (another
    configuration) or have an unknown version (upgraded).
    """
    grids = None
    parts: dict[str, list[dict]] = {}
    for profile in profiles:
        profile = upgraded(profile)
        if grids is None:
            grids = profile["grids"]
        elif profile["grids"] != grids:
            raise ValueError("batch profiles made on different grids cannot be merged; re-profile the batches")
        for day, stats in profile["days"].items():
            if (start_day and day < start_day) or (end_day and day > end_day):
                continue
            parts.setdefault(day, []).append(stats)
    grids = grids or {}
    days = {day: same[0] if len(same) == 1 else _sum_days(same, grids) for day, same in parts.items()}
    return {"version": VERSION, "grids": grids, "days": days}


def _sum_days(days: list[dict], grids: dict) -> dict:
    """One day entry of several (its lists as numpy arrays)."""
    names = dict.fromkeys(name for stats in days for name in stats["features"])
    features = {
        name: sum_feature([s["features"][name] for s in days if name in s["features"]], grids[name]) for name in names
    }
    return {"rows": sum(s["rows"] for s in days), "features": features}


def _gather(entries: list[dict], key: str, dtype) -> np.ndarray:
    """One array of list `key` (a list or an array) of every entry, in entry order."""
    return np.concatenate([np.asarray(e.get(key, ()), dtype=dtype) for e in entries] or [np.zeros(0, dtype)])


def _group_sum(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct keys, sorted; the sum of counts per key)."""
    unique, inverse = np.unique(keys, return_inverse=True)
    return unique, np.bincount(inverse, weights=counts, minlength=len(unique)).astype(np.int64)


def sum_feature(entries: list[dict], grid: dict) -> dict:
    """One feature's day entries summed: missing, sum, present and the lists of the entries' format
    as numpy arrays, each grouped in one sum (cells: np.bincount over the grid; values and
    categories: np.unique). Equal to adding the entries' counts one by one (a property test)."""
    out = {"missing": sum(e["missing"] for e in entries)}
    if grid["kind"] == "categories":
        categories = np.array([c for e in entries for c in e.get("categories", ())], dtype=str)
        out["categories"], out["category_counts"] = _group_sum(
            categories, _gather(entries, "category_counts", np.int64)
        )
        out["present"] = int(out["category_counts"].sum())
        return out
    out["sum"] = sum(e.get("sum", 0.0) for e in entries)
    out["values"], out["value_counts"] = _group_sum(
        _gather(entries, "values", float), _gather(entries, "value_counts", np.int64)
    )
    out["present"] = int(out["value_counts"].sum())
    if grid["kind"] == "range" and any("cells" in e for e in entries):
        cells, size = _gather(entries, "cells", np.int64), grid["bins"] + 2
        counts = np.bincount(cells, weights=_gather(entries, "cell_counts", np.int64), minlength=size)
        low, high = np.full(size, np.inf), np.full(size, -np.inf)
        np.minimum.at(low, cells, _gather(entries, "cell_min", float))
        np.maximum.at(high, cells, _gather(entries, "cell_max", float))
        occupied = np.flatnonzero(counts)
        out.update(
            cells=occupied,
            cell_counts=counts[occupied].astype(np.int64),
            cell_min=low[occupied],
            cell_max=high[occupied],
        )
        out["present"] += int(out["cell_counts"].sum())
    return out


def window_totals(merged: dict) -> dict:
    """Over every day of a merged profile: rows, rows per calendar month ("1".."12"), and per
    feature sum_feature of its days; categorical features also get counts {category: count}."""
    merged = upgraded(merged)
    months: dict[str, int] = {}
    entries: dict[str, list[dict]] = {}
    for day, stats in merged["days"].items():
        month = str(int(day[5:7]))
        months[month] = months.get(month, 0) + stats["rows"]
        for name, feature in stats["features"].items():
            entries.setdefault(name, []).append(feature)
    features = {}
    for name, grid in merged["grids"].items():
        features[name] = sum_feature(entries.get(name, []), grid)
        if grid["kind"] == "categories":
            cats, counts = features[name]["categories"], features[name]["category_counts"]
            features[name]["counts"] = dict(zip(cats.tolist(), counts.tolist(), strict=True))
    return {"rows": sum(months.values()), "months": months, "features": features}


def rebin(feature: dict, grid: dict, inner_edges: list[float]) -> tuple[np.ndarray, float]:
    """(counts per reference bin (-inf, e0], ..., (e_last, inf), ks_error_bound) of a numeric
    feature's window totals (sum_feature).

    Exact values go to their bin. A range cell whose values all lie on one side of every edge
    goes, exactly, to the bin of its values (discrete data whose values are the reference's
    edges: the bin of the edge, not of the cell's midpoint); only a cell with values on both
    sides of an edge is split approximately, by the middle of its values. ks_error_bound: the
    largest share of rows in one such cell (module docstring); 0 when every cell is exact.
    """
    edges = np.asarray(inner_edges, dtype=float)
    out = np.zeros(len(edges) + 1)
    if not feature.get("present"):
        return out, 0.0
    if len(feature["values"]):
        np.add.at(out, np.searchsorted(edges, feature["values"], side="left"), feature["value_counts"])
    if not len(feature.get("cells", ())):
        return out, 0.0
    n, lo, hi = (np.asarray(feature[key], dtype=float) for key in ("cell_counts", "cell_min", "cell_max"))
    np.add.at(out, np.searchsorted(edges, (lo + hi) / 2, side="left"), n)
    # Bins are right-closed: a cell is split when its lowest value is <= an edge < its highest.
    straddles = np.searchsorted(edges, lo, side="left") != np.searchsorted(edges, hi, side="left")
    bound = float(n[straddles].max() / feature["present"]) if straddles.any() else 0.0
    return out, bound


# --- stored in the warehouse (table batch_profiles, include/sql/schema/050_batch_profiles.sql) ---


def read_batch_rows(batch_id: str, dataset: DatasetConfig) -> pd.DataFrame:
    """The observations a batch holds now, with the configured types (time column datetime64)."""
    from mlops.io import warehouse

    frame = warehouse.read_sql("batch_profiles/batch_rows.sql", {"batch_id": batch_id})
    frame[dataset.time_column] = pd.to_datetime(frame[dataset.time_column], format=warehouse.TIMESTAMP_FORMAT)
    for name, spec in dataset.columns.items():
        if spec.type in ("float", "int"):
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
    return frame


def store_profile(batch_id: str, dataset: DatasetConfig) -> dict:
    """Profile a batch from its stored rows and upsert it; returns {batch_id, days, rows}.

    Idempotent: the profile is a function of the rows the batch holds, and the row is replaced
    by key, so a retry after a crash stores the same profile.
    """
    import datetime as dt
    import json

    import sqlalchemy as sa

    from mlops.io import warehouse

    # Counted before the rows are read: a replace in between leaves the profile marked stale.
    replaced = int(warehouse.read_sql("batch_profiles/replaced_rows.sql", {"batch_id": batch_id})["replaced"].iloc[0])
    profile = batch_profile(read_batch_rows(batch_id, dataset), dataset)
    days = sorted(profile["days"])
    params = {
        "batch_id": batch_id,
        "first_day": days[0] if days else "",
        "last_day": days[-1] if days else "",
        "n_rows": sum(d["rows"] for d in profile["days"].values()),
        "replaced_rows": replaced,
        "profile": json.dumps(profile, separators=(",", ":")),
        "created_at": dt.datetime.now(dt.UTC).strftime(warehouse.TIMESTAMP_FORMAT),
    }
    with warehouse.engine().begin() as conn:
        conn.execute(sa.text(warehouse.render_sql("batch_profiles/upsert.sql")), params)
    return {"batch_id": batch_id, "days": len(days), "rows": params["n_rows"]}


def pending_batches() -> list[str]:
    """Loaded batches without a profile or with a stale one (to_profile.sql), sorted."""
    from mlops.io import warehouse

    return warehouse.read_sql("batch_profiles/to_profile.sql")["batch_id"].tolist()


def profile_pending(dataset: DatasetConfig) -> list[dict]:
    """Profile every loaded batch without a profile or with a stale one (pending_batches).

    Ingest's profile_batches task calls it after every load. A crash between two batches
    leaves the rest pending: the next call (a retry, the next ingest run) profiles them;
    meanwhile drift_check reads the window's rows (mlops.monitoring.check.window_data).
    """
    return [store_profile(batch_id, dataset) for batch_id in pending_batches()]


def window_profile(start_day: str, end_day: str) -> tuple[dict, int]:
    """(merged profile of the days [start_day, end_day] of every stored batch profile, batches merged)."""
    import json

    from mlops.io import warehouse

    rows = warehouse.read_sql("batch_profiles/window.sql", {"start_day": start_day, "end_day": end_day})
    profiles = [json.loads(text) for text in rows["profile"]]
    return merge(profiles, start_day, end_day), len(profiles)
