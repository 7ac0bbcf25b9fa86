"""Small mergeable profiles of loaded batches, so drift_check can merge counts instead of re-reading rows.

A batch profile holds, per calendar day of the time column: the row count and, per feature,
the missing count, the sum of the values (for the mean) and the counts on a fixed grid that
does not depend on any model, so a new champion needs no re-profiling:

* numeric features with a configured physical range [min, max] (dataset.columns): GRID_BINS
  equal-width cells over the range, plus one cell below and one above it;
* numeric features with a set of allowed values (and no range): a count per value (exact);
* string features: a count per category (exact).

Counts are stored sparse ({cell: count}); a day with at most EXACT_VALUES distinct values of
a feature (any day of hourly data) stores its values' exact counts instead of cells, so a
month of hourly data profiles to a few thousand numbers whatever its rows, and is exact.
Profiles add up: merge() of the profiles of any split of rows equals the profile of all of
them (a property test checks it).

From a merged window, rebin() re-bins the grid onto the champion's decile edges. Range cells
also keep their smallest and largest value, so a cell whose values all lie on one side of an
edge is re-binned exactly (discrete values, common in sensor data, are often the edges
themselves). A cell with values on both sides of a reference edge cannot be split: its rows
go to the bin of the middle of its values, and the empirical CDF at that edge can be off by
at most that cell's share of rows. The largest such share is returned as ks_error_bound: the binned KS statistic from
a profile is within ks_error_bound of the one from rows (0 for exact cells), and PSI moves by
the same order. With 4096 cells a cell of temperature spans 0.03 degrees C.
A numeric feature with neither range nor allowed values has no fixed grid: the caller reads
its rows (profile_gaps() names such features).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops.config import ColumnSpec, DatasetConfig

GRID_BINS = 4096
# A day's values of a range feature are counted exactly (key "v<value>") up to this many
# distinct values, else on the grid's cells.
EXACT_VALUES = 256
VERSION = 2  # 2: range cells keep their smallest and largest value


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
    """Grid cell of every present value: range cells 0 (below low), 1..bins, bins + 1 (at or above high)."""
    if grid["kind"] == "range":
        width = (grid["high"] - grid["low"]) / grid["bins"]
        return np.clip(np.floor((values - grid["low"]) / width).astype(np.int64) + 1, 0, grid["bins"] + 1)
    # Allowed values: the index of the value; a value not allowed gets its own key below.
    return np.searchsorted(np.asarray(grid["values"]), values)


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
        keys = values[present].astype(str).to_numpy()
        numbers = None
    else:
        numeric = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        present = ~np.isnan(numeric)
        numbers = numeric[present]
        keys = _cells(numbers, grid)
        if grid["kind"] == "values":
            allowed = np.asarray(grid["values"])
            inside = keys < len(allowed)
            exact = np.zeros(len(keys), dtype=bool)
            exact[inside] = allowed[keys[inside]] == numbers[inside]
            # A value outside the allowed set keeps its own key (the value), not a neighbour's.
            keys = np.where(exact, keys.astype(str), np.char.add("v", numbers.astype(str)))
    codes = day_codes[present]
    missing = np.bincount(day_codes[~present], minlength=len(day_labels))
    out = {}
    for code, day in enumerate(day_labels):
        mine = codes == code
        cell, count = np.unique(keys[mine], return_counts=True)
        stats = {"missing": int(missing[code]), "counts": {str(c): int(n) for c, n in zip(cell, count, strict=True)}}
        if numbers is not None:
            stats["sum"] = float(numbers[mine].sum())
        if grid["kind"] == "range":
            values, times = np.unique(numbers[mine], return_counts=True)
            if len(values) <= EXACT_VALUES:
                # Few distinct values (a day of hourly data has at most 24): exact counts, no cells.
                stats["counts"] = {f"v{float(v)!r}": int(n) for v, n in zip(values, times, strict=True)}
            else:
                stats["min"], stats["max"] = _cell_extremes(keys[mine], numbers[mine])
        out[day] = stats
    return out


def _cell_extremes(keys: np.ndarray, numbers: np.ndarray) -> tuple[dict, dict]:
    """({cell: smallest value}, {cell: largest value}) of the present values of one day."""
    if not len(keys):
        return {}, {}
    series = pd.Series(numbers).groupby(keys)
    low, high = series.min(), series.max()
    return (
        {str(c): float(v) for c, v in low.items()},
        {str(c): float(v) for c, v in high.items()},
    )


def merge(profiles: list[dict], start_day: str | None = None, end_day: str | None = None) -> dict:
    """One profile of the days in [start_day, end_day] (YYYY-MM-DD, inclusive; None: open) of all profiles.

    The result shares the day entries of its inputs that only one input has: read it, do not
    change it. Raises ValueError when the profiles were made on different grids (another configuration).
    """
    merged = {"version": VERSION, "grids": None, "days": {}}
    owned: set[str] = set()  # days summed into a dict of the merge's own
    for profile in profiles:
        if merged["grids"] is None:
            merged["grids"] = profile["grids"]
        elif profile["grids"] != merged["grids"]:
            raise ValueError("batch profiles made on different grids cannot be merged; re-profile the batches")
        for day, stats in profile["days"].items():
            if (start_day and day < start_day) or (end_day and day > end_day):
                continue
            if day not in merged["days"]:
                # Shared, not copied: most days are in one batch only, and nothing here mutates it.
                merged["days"][day] = stats
                continue
            if day not in owned:
                first, merged["days"][day] = merged["days"][day], {"rows": 0, "features": {}}
                _add_day(merged["days"][day], first)
                owned.add(day)
            _add_day(merged["days"][day], stats)
    merged["grids"] = merged["grids"] or {}
    return merged


def _add_day(into: dict, stats: dict) -> None:
    into["rows"] += stats["rows"]
    for name, feature in stats["features"].items():
        target = into["features"].setdefault(name, {"missing": 0, "counts": {}})
        target["missing"] += feature["missing"]
        if "sum" in feature:
            target["sum"] = target.get("sum", 0.0) + feature["sum"]
        for cell, count in feature["counts"].items():
            target["counts"][cell] = target["counts"].get(cell, 0) + count
        for key, pick in (("min", min), ("max", max)):
            if key in feature:
                extremes = target.setdefault(key, {})
                for cell, value in feature[key].items():
                    extremes[cell] = pick(extremes.get(cell, value), value)


def window_totals(merged: dict) -> dict:
    """Per feature over every day of a merged profile: rows, missing, sum, counts; and rows per month."""
    months: dict[str, int] = {}
    rows = 0
    gathered: dict[str, dict] = {}
    for day, stats in merged["days"].items():
        rows += stats["rows"]
        month = str(int(day[5:7]))
        months[month] = months.get(month, 0) + stats["rows"]
        for name, feature in stats["features"].items():
            target = gathered.setdefault(
                name,
                {
                    "missing": 0,
                    "sum": 0.0,
                    "keys": [],
                    "counts": [],
                    "min": [],
                    "max": [],
                    "min_cells": [],
                    "max_cells": [],
                },
            )
            target["missing"] += feature["missing"]
            target["sum"] += feature.get("sum", 0.0)
            target["keys"].extend(feature["counts"].keys())
            target["counts"].extend(feature["counts"].values())
            for key in ("min", "max"):
                extremes = feature.get(key)
                if extremes:
                    target[key + "_cells"].extend(extremes.keys())
                    target[key].extend(extremes.values())
    features = {}
    for name, target in gathered.items():
        # One vectorised group-by per feature instead of a dict update per cell and day.
        summed = pd.Series(target["counts"], index=target["keys"], dtype="int64").groupby(level=0).sum()
        features[name] = {"missing": target["missing"], "sum": target["sum"], "counts": summed.to_dict()}
        for key in ("min", "max") if target["min"] else ():
            values = pd.Series(target[key], index=target[key + "_cells"], dtype=float)
            features[name][key] = values.groupby(level=0).agg(key).to_dict()
    return {"rows": rows, "months": months, "features": features}


def rebin(
    counts: dict[str, int],
    grid: dict,
    inner_edges: list[float],
    low: dict[str, float] | None = None,
    high: dict[str, float] | None = None,
) -> tuple[np.ndarray, float]:
    """(counts per reference bin (-inf, e0], ..., (e_last, inf), ks_error_bound) from grid counts.

    low/high: the smallest and largest value seen in each range cell. A cell whose values all
    lie on one side of every edge goes, exactly, to the bin of its values (discrete data whose
    values are the reference's edges: the bin of the edge, not of the cell's midpoint); only a
    cell with values on both sides of an edge is split approximately, by the middle of its values.
    ks_error_bound: the largest share of rows in one such cell (module docstring); 0 when every
    cell is exact.
    """
    edges = np.asarray(inner_edges, dtype=float)
    out = np.zeros(len(edges) + 1)
    total = sum(counts.values())
    if not counts or total == 0:
        return out, 0.0
    if grid["kind"] == "values":
        values = np.array([float(k[1:]) if k.startswith("v") else grid["values"][int(k)] for k in counts])
        np.add.at(out, np.searchsorted(edges, values, side="left"), np.fromiter(counts.values(), float))
        return out, 0.0
    exact = {k: c for k, c in counts.items() if k.startswith("v")}
    if exact:
        values = np.array([float(k[1:]) for k in exact])
        np.add.at(out, np.searchsorted(edges, values, side="left"), np.fromiter(exact.values(), float))
        counts = {k: c for k, c in counts.items() if not k.startswith("v")}
        if not counts:
            return out, 0.0
    cells = np.array([int(k) for k in counts])
    n = np.fromiter(counts.values(), float)
    width = (grid["high"] - grid["low"]) / grid["bins"]
    left = grid["low"] + (cells - 1) * width
    # Without the cells' extremes: the cell's bounds (open cells: their inner boundary).
    lo = np.where(cells == 0, -np.inf, left)
    hi = np.where(cells > grid["bins"], np.inf, left + width)
    if low and high:
        lo = np.array([low[k] for k in counts], dtype=float)
        hi = np.array([high[k] for k in counts], dtype=float)
    mid = np.where(np.isfinite(lo) & np.isfinite(hi), (lo + hi) / 2, np.where(np.isfinite(lo), lo, hi))
    np.add.at(out, np.searchsorted(edges, mid, side="left"), n)
    # Bins are right-closed: a cell is split when its lowest value is <= an edge < its highest.
    straddles = np.searchsorted(edges, lo, side="left") != np.searchsorted(edges, hi, side="left")
    bound = float(n[straddles].max() / total) if straddles.any() else 0.0
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


def profile_pending(dataset: DatasetConfig) -> list[dict]:
    """Profile every loaded batch without a profile or with a stale one (to_profile.sql).

    A crash between two batches leaves the rest pending: the next call (a retry, the next
    ingest run, or drift_check) profiles them.
    """
    from mlops.io import warehouse

    pending = warehouse.read_sql("batch_profiles/to_profile.sql")["batch_id"].tolist()
    return [store_profile(batch_id, dataset) for batch_id in pending]


def window_profile(start_day: str, end_day: str) -> tuple[dict, int]:
    """(merged profile of the days [start_day, end_day] of every stored batch profile, batches merged)."""
    import json

    from mlops.io import warehouse

    rows = warehouse.read_sql("batch_profiles/window.sql", {"start_day": start_day, "end_day": end_day})
    profiles = [json.loads(text) for text in rows["profile"]]
    return merge(profiles, start_day, end_day), len(profiles)
