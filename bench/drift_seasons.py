"""The Turku replay's drift checks offline: raw against season-adjusted, with and without a fault.

    .venv/bin/python bench/drift_seasons.py [--months-per-drop 6] [--fault Temperature_C:+4]

Replays what `make demo` does to drift_check, without services: the first champion is trained
on the history (everything before 2015-07, the last training_window_days of it); its
reference profile is the profile of its training rows (the most recent holdout_fraction held
out), as train builds it. The remaining months are dropped months_per_drop at a time; after
each drop drift_check compares the last drift.window_days days with that reference. The
champion is kept (in the replay of the issue every later version lost the gate). Printed per
check: the features that drift on the raw shift and on the shift the season does not
explain, whether the rule fires, and the same with the fault injected into that drop only
(mlops.monitoring.faults). Real data, configured thresholds; no figure here is assumed.
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
from mlops.monitoring import drift, faults  # noqa: E402
from mlops.monitoring.profile import build_profile  # noqa: E402

DATA = ROOT / "include" / "data" / "port_of_turku_weather.csv.gz"
HISTORY_END = "2015-07-01"


def load(dataset) -> pd.DataFrame:
    """The example data as the warehouse holds it: the configured ranges applied as ingest does
    (out of range: the value nulled for set_null columns, the row dropped otherwise)."""
    frame = pd.read_csv(DATA)
    frame[dataset.time_column] = pd.to_datetime(frame[dataset.time_column])
    keep = pd.Series(True, index=frame.index)
    for name, spec in dataset.columns.items():
        if spec.type not in ("float", "int"):
            continue
        frame[name] = pd.to_numeric(frame[name], errors="coerce")
        outside = (spec.min is not None) & (frame[name] < (spec.min if spec.min is not None else 0))
        outside |= (spec.max is not None) & (frame[name] > (spec.max if spec.max is not None else 0))
        if spec.on_out_of_range == "set_null":
            frame.loc[outside, name] = float("nan")
        else:
            keep &= ~outside
    frame = frame[keep]
    return frame.sort_values(dataset.time_column).drop_duplicates(dataset.time_column).reset_index(drop=True)


def reference_profile(frame: pd.DataFrame, config, history_end: str = HISTORY_END) -> dict:
    """The champion's profile: its whole window, holdout included, as train does (mlops.training.pipeline.reference_profile)."""
    dataset, time_col = config.dataset, config.dataset.time_column
    history = frame[frame[time_col] < history_end]
    start = history[time_col].max() - pd.Timedelta(days=config.model.training_window_days)
    window = add_label(history[history[time_col] > start], dataset).dropna(subset=[dataset.label.name])
    return build_profile(window, dataset)


def check(profile: dict, window: pd.DataFrame, config, overrides: dict) -> dict:
    thresholds = drift.Thresholds.from_config(config.drift, overrides)
    result = drift.compute_drift(config.dataset, profile, window, thresholds)
    drifted = [f["feature"] for f in result["features"] if f["drifted"]]
    return {"drifted": drifted, "fired": result["rule"]["fired"], "notes": result["season"]["notes"]}


def _same_days_a_year_earlier(frame: pd.DataFrame, window: pd.DataFrame, config) -> dict | None:
    """The window against the same calendar days one year earlier (no season model at all):
    a shift that shows here too is not the season's doing."""
    time_col = config.dataset.time_column
    start, end = window[time_col].min() - pd.DateOffset(years=1), window[time_col].max() - pd.DateOffset(years=1)
    earlier = frame[(frame[time_col] >= start) & (frame[time_col] <= end)]
    if len(earlier) < config.drift.min_stratum_rows:
        return None
    profile = build_profile(add_label(earlier, config.dataset), config.dataset)
    return check(profile, window, config, {"season_key": "none", "seasonal_adjustment": False})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--months-per-drop", type=int, default=6)
    parser.add_argument("--fault", default="Temperature_C:+4", help="column:+offset or column:*scale")
    parser.add_argument("--season-key", default=None, help="month | quarter | none (default: configured)")
    parser.add_argument(
        "--champion-until",
        default=HISTORY_END,
        help="the champion was trained on the data before this date (make demo: 2016-01-01, when v1 lacked "
        "evidence and the retrain after the first drop became the first champion)",
    )
    args = parser.parse_args()
    config = load_config(environ={})
    time_col, days = config.dataset.time_column, config.drift.window_days
    frame = load(config.dataset)
    profile = reference_profile(frame, config, args.champion_until)
    fault = faults.parse_fault(args.fault)
    print(f"reference: {profile['n_rows']} rows, months {profile['strata']['rows']}")
    print(
        f"window {days} days; thresholds: PSI >= {config.drift.psi_threshold}, share >= {config.drift.drifted_feature_share}"
    )
    season = {"season_key": args.season_key} if args.season_key else {}
    drops = pd.date_range(args.champion_until, frame[time_col].max(), freq=f"{args.months_per_drop}MS")
    fired = {"raw": 0, "season-adjusted": 0, "fault caught": 0}
    clean_flags = set()
    for drop_start in drops:
        drop_end = drop_start + pd.DateOffset(months=args.months_per_drop)
        seen = frame[frame[time_col] < drop_end]
        end = seen[time_col].max()
        window = seen[seen[time_col] > end - pd.Timedelta(days=days)]
        faulty = faults.inject_fault(window, fault)
        print(
            f"\ncheck after drop {drop_start:%Y-%m}..{drop_end - pd.Timedelta(days=1):%Y-%m}: window ({end - pd.Timedelta(days=days)}, {end}], {len(window)} rows"
        )
        for name, overrides, data in (
            ("raw", {**season, "seasonal_adjustment": False}, window),
            ("season-adjusted", {**season, "seasonal_adjustment": True}, window),
            (f"season-adjusted + fault {fault.describe()}", {**season, "seasonal_adjustment": True}, faulty),
        ):
            result = check(profile, data, config, overrides)
            key = "fault caught" if "fault" in name else name
            if key == "season-adjusted":
                clean_flags = set(result["drifted"])
            # A fault counts as caught only where its feature did not drift without it.
            caught = fault.column in set(result["drifted"]) - clean_flags if key == "fault caught" else result["fired"]
            fired[key] += int(caught)
            print(f"  {name:55} fired={str(result['fired']):5} drifted={result['drifted']}")
        for note in result["notes"]:
            print(f"    note: {note}")
        year_before = _same_days_a_year_earlier(frame, window, config)
        if year_before is not None:
            print(
                f"  {'raw, against the same 30 days a year earlier':55} fired={str(year_before['fired']):5} drifted={year_before['drifted']}"
            )
    print(
        f"\n{len(drops)} checks: rule fired on raw shift {fired['raw']}, on season-adjusted {fired['season-adjusted']}; "
        f"the faulty feature flagged only with the fault in {fired['fault caught']} of {len(drops)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
