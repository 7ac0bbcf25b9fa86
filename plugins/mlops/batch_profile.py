"""Small mergeable profiles of loaded batches, so drift_check can merge counts instead of re-reading rows.

A batch profile holds, per calendar day of the time column: the row count and, per feature,
the missing count, the sum of the values (for the mean) and the counts on a fixed grid that
does not depend on any model, so a new champion needs no re-profiling:

* numeric features with a configured physical range [min, max] (dataset.columns): GRID_BINS
  equal-width cells over the range, plus one cell below and one above it;
* numeric features with a set of allowed values (and no range): a count per value (exact);
* string features: a count per category (exact).

Counts are stored sparse ({cell: count}, a day of hourly data fills at most 24 cells per
feature), so a month of hourly data profiles to a few thousand numbers whatever its rows.
Profiles add up: merge() of the profiles of any split of rows equals the profile of all of
them (a property test checks it).

From a merged window, window_counts() re-bins the grid onto the champion's decile edges. A
grid cell that straddles a reference edge cannot be split: its rows go to the bin of the
cell's midpoint, and the empirical CDF at that edge can be off by at most that cell's share
of rows. The largest such share is returned as ks_error_bound: the binned KS statistic from
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
VERSION = 1


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
        out[day] = stats
    return out


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
            target = gathered.setdefault(name, {"missing": 0, "sum": 0.0, "keys": [], "counts": []})
            target["missing"] += feature["missing"]
            target["sum"] += feature.get("sum", 0.0)
            target["keys"].extend(feature["counts"].keys())
            target["counts"].extend(feature["counts"].values())
    features = {}
    for name, target in gathered.items():
        # One vectorised group-by per feature instead of a dict update per cell and day.
        summed = pd.Series(target["counts"], index=target["keys"], dtype="int64").groupby(level=0).sum()
        features[name] = {"missing": target["missing"], "sum": target["sum"], "counts": summed.to_dict()}
    return {"rows": rows, "months": months, "features": features}


def rebin(counts: dict[str, int], grid: dict, inner_edges: list[float]) -> tuple[np.ndarray, float]:
    """(counts per reference bin (-inf, e0], ..., (e_last, inf), ks_error_bound) from grid counts.

    ks_error_bound: the largest share of rows in one cell that straddles an edge (module
    docstring); 0 when every cell is a single value.
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
    cells = np.array([int(k) for k in counts])
    n = np.fromiter(counts.values(), float)
    width = (grid["high"] - grid["low"]) / grid["bins"]
    left = grid["low"] + (cells - 1) * width
    # The open cells below low and above high have no midpoint: use their inner boundary.
    mid = np.where(cells == 0, grid["low"], np.where(cells > grid["bins"], grid["high"], left + width / 2))
    np.add.at(out, np.searchsorted(edges, mid, side="left"), n)
    lo = np.where(cells == 0, -np.inf, left)
    hi = np.where(cells > grid["bins"], np.inf, left + width)
    straddles = ((edges[None, :] >= lo[:, None]) & (edges[None, :] < hi[:, None])).any(axis=1)
    bound = float(n[straddles].max() / total) if straddles.any() else 0.0
    return out, bound


# --- stored in the warehouse (table batch_profiles, include/sql/schema/050_batch_profiles.sql) ---


def read_batch_rows(batch_id: str, dataset: DatasetConfig) -> pd.DataFrame:
    """The observations a batch holds now, with the configured types (time column datetime64)."""
    from mlops import warehouse

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

    from mlops import warehouse

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
    from mlops import warehouse

    pending = warehouse.read_sql("batch_profiles/to_profile.sql")["batch_id"].tolist()
    return [store_profile(batch_id, dataset) for batch_id in pending]


def window_profile(start_day: str, end_day: str) -> tuple[dict, int]:
    """(merged profile of the days [start_day, end_day] of every stored batch profile, batches merged)."""
    import json

    from mlops import warehouse

    rows = warehouse.read_sql("batch_profiles/window.sql", {"start_day": start_day, "end_day": end_day})
    profiles = [json.loads(text) for text in rows["profile"]]
    return merge(profiles, start_day, end_day), len(profiles)
