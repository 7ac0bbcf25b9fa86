"""The daily data set's demo drift checks offline: which drift settings fire, and on what.

    .venv/bin/python bench/drift_daily.py [--config include/config/city_bikes_daily.yaml]

Replays what `MLOPS_CONFIG=include/config/city_bikes_daily.yaml make demo` does to
drift_check, without services: the champion is trained on the history (every row before
dataset.example_history_until, the last model.training_window_days of it) and its reference
profile is the profile of those rows, as train builds it; the later quarters are dropped two
at a time and after each drop drift_check compares the last drift.window_days days with that
reference (the champion is kept: in the demo every retrain lost the gate). Printed per check
and per setting (season_key, min_stratum_rows, seasonal adjustment; the configured rest):
the features that drift and whether the rule fires, and that the check from batch profiles
gives the same result as the check from rows. The data set's one real change (rentals +50%
from 2023-04, new stations: tests/data/make_city_bikes_daily.py) should fire; the seasons
alone should not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from mlops.config import load_config  # noqa: E402
from mlops.labels import add_label  # noqa: E402
from mlops.monitoring import batch_profile, drift  # noqa: E402
from mlops.monitoring.profile import build_profile  # noqa: E402

SETTINGS = [
    {"season_key": "none", "seasonal_adjustment": False},
    {"season_key": "month", "min_stratum_rows": 100},
    {"season_key": "month", "min_stratum_rows": 20},
    {"season_key": "quarter", "min_stratum_rows": 100},
    {"season_key": "quarter", "min_stratum_rows": 60},
    {"season_key": "month", "min_stratum_rows": 20, "severe_ks": 0.5},
    {"season_key": "quarter", "min_stratum_rows": 60, "severe_ks": 0.5},
]


def load(config) -> pd.DataFrame:
    """The example file with the configured types (no row of it breaks the configured ranges)."""
    dataset = config.dataset
    frame = pd.read_csv(ROOT / dataset.example_file)
    frame[dataset.time_column] = pd.to_datetime(frame[dataset.time_column], format=dataset.time_format)
    for name, spec in dataset.columns.items():
        if spec.type in ("float", "int"):
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
    return frame.sort_values(dataset.time_column).reset_index(drop=True)


def history_end(config) -> pd.Timestamp:
    """The first day of dataset.example_history_until ("2022-Q3")."""
    return pd.Period(config.dataset.example_history_until.replace("-", ""), freq="Q").start_time


def check(config, profile: dict, window: pd.DataFrame, overrides: dict, from_profiles: bool) -> dict:
    thresholds = drift.Thresholds.from_config(config.drift, overrides)
    merged = batch_profile.batch_profile(window, config.dataset) if from_profiles else None
    result = drift.compute_drift(config.dataset, profile, window, thresholds, merged=merged)
    return {
        "drifted": [f["feature"] for f in result["features"] if f["drifted"]],
        "fired": result["rule"]["fired"],
        "reason": result["rule"]["reason"],
        "notes": result["season"]["notes"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="include/config/city_bikes_daily.yaml")
    args = parser.parse_args()
    config = load_config(ROOT / args.config, environ={})
    dataset, time_col = config.dataset, config.dataset.time_column
    frame = load(config)
    end = history_end(config)
    history = frame[frame[time_col] < end]
    history = history[
        history[time_col] > history[time_col].max() - pd.Timedelta(days=config.model.training_window_days)
    ]
    profile = build_profile(add_label(history, dataset).dropna(subset=[dataset.label.name]), dataset)
    print(f"reference: {profile['n_rows']} rows, rows per month {profile['strata']['rows']}")
    print(f"configured: {config.drift.model_dump()}")
    fired = {i: 0 for i in range(len(SETTINGS))}
    drops = pd.date_range(end, frame[time_col].max(), freq="6MS")
    for drop_start in drops:
        seen = frame[frame[time_col] < drop_start + pd.DateOffset(months=6)]
        last = seen[time_col].max()
        window = seen[seen[time_col] > last - pd.Timedelta(days=config.drift.window_days)]
        print(f"\ncheck after the drop ending {last:%Y-%m-%d}: {len(window)} rows")
        for i, overrides in enumerate(SETTINGS):
            rows = check(config, profile, window, overrides, from_profiles=False)
            profiled = check(config, profile, window, overrides, from_profiles=True)
            same = (
                "same from profiles"
                if (rows["drifted"], rows["fired"]) == (profiled["drifted"], profiled["fired"])
                else f"PROFILES DIFFER: {profiled['drifted']}"
            )
            fired[i] += rows["fired"]
            label = ", ".join(f"{k}={v}" for k, v in overrides.items())
            print(f"  {label:68} fired={str(rows['fired']):5} drifted={rows['drifted']} ({same})")
            for note in rows["notes"]:
                print(f"      note: {note}")
    print(f"\n{len(drops)} checks; fired per setting:")
    for i, overrides in enumerate(SETTINGS):
        print(f"  {', '.join(f'{k}={v}' for k, v in overrides.items()):68} {fired[i]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
