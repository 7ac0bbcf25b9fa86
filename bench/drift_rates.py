"""How often drift_check fires on the Turku weather without a fault, and with one (offline).

    .venv/bin/python bench/drift_rates.py [--every-days 10] [--fault Temperature_C:+4 ...] [--autocorrelation false]

The demo's three checks are three samples; this slides the 30-day window (drift.window_days)
every --every-days days over the months after each champion's training window, for the two
champions of the replay (trained on the data before 2015-07 and before 2016-01, as
bench/drift_seasons.py builds them; windows up to 2016-11, before the source change of
November 2016, see the closing note). Per window it runs the configured check on the clean
window and on the window with each fault injected (mlops.monitoring.faults), and counts:

* share: the share rule fired (drifted_feature_share);
* severe: the single-feature rule fired on the faulty feature (drift.severe_ks), or, clean,
  on any feature;
* rule: the data-set rule fired at all.

Printed: these rates per fault, then the single-feature rule's rates over a range of
severe_ks thresholds, then per feature how often its test's p-value falls below the configured
one on the clean windows (a calibrated test on data without drift: about that p-value) with
the design effect the test used (drift.autocorrelation; --autocorrelation false counts every
row as independent, the tests before the correction). Real data, configured thresholds; no
figure here is assumed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1] / "plugins")]

from drift_seasons import load, reference_profile  # noqa: E402

from mlops.config import load_config  # noqa: E402
from mlops.monitoring import drift, faults  # noqa: E402

CHAMPIONS = (("2015-07-01", "2016-07-01"), ("2016-01-01", "2016-11-01"))
FAULTS = ("Temperature_C:+4", "Temperature_C:+6", "Pressure_millibars:-10", "Humidity:*0.8", "Wind_speed_kmph:*0.5")
SEVERE_RANGE = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)


def windows(frame: pd.DataFrame, time_col: str, days: int, every: int):
    """(champion_until, window) pairs: 30-day windows after each champion, every `every` days."""
    for until, last in CHAMPIONS:
        first = pd.Timestamp(until) + pd.Timedelta(days=days)
        for end in pd.date_range(first, last, freq=f"{every}D"):
            yield until, frame[(frame[time_col] > end - pd.Timedelta(days=days)) & (frame[time_col] <= end)]


def measure(frame: pd.DataFrame, config, fault_specs, every: int, overrides: dict | None = None) -> tuple:
    """(verdicts, tests): one row per (window, fault or 'clean') with the rules' verdicts and the
    KS distance that counts; one row per clean window and feature with its test's p-value."""
    thresholds = drift.Thresholds.from_config(config.drift, overrides)
    time_col, rows, tests, profiles = config.dataset.time_column, [], [], {}
    for until, window in windows(frame, time_col, config.drift.window_days, every):
        profile = profiles.setdefault(until, reference_profile(frame, config, until))
        for spec in ("clean", *fault_specs):
            fault = None if spec == "clean" else faults.parse_fault(spec)
            data = window if fault is None else faults.inject_fault(window, fault)
            result = drift.compute_drift(config.dataset, profile, data, thresholds)
            distances = {f["feature"]: (f["statistic"] or 0.0) for f in result["features"] if f["drifted"]}
            rule = result["rule"]
            share = rule["drifted_share"] >= thresholds.drifted_feature_share
            severe = rule["severe_features"] if fault is None else set(rule["severe_features"]) & {fault.column}
            distance = max(distances.values(), default=0.0) if fault is None else distances.get(fault.column, 0.0)
            rows.append({"fault": spec, "share": share, "severe": bool(severe), "rule": rule["fired"], "D": distance})
            if fault is None:
                tests += [_test_row(f, thresholds) for f in result["features"]]
    return pd.DataFrame(rows), pd.DataFrame(tests)


def _test_row(feature: dict, thresholds: drift.Thresholds) -> dict:
    """A clean window's test of one feature: significant at the configured p-value? With which design effect?"""
    level = thresholds.ks_pvalue if feature["test"] == "ks" else thresholds.chi2_pvalue
    return {
        "feature": feature["feature"],
        "significant": feature["p_value"] < level,
        "drifted": feature["drifted"],
        "design_effect": feature.get("design_effect", 1.0),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every-days", type=int, default=10)
    parser.add_argument("--fault", action="append", default=None, help="column:+offset or column:*scale (repeat)")
    parser.add_argument("--autocorrelation", default=None, help="true | false (default: configured)")
    args = parser.parse_args()
    config = load_config(environ={})
    frame = load(config.dataset)
    overrides = {"autocorrelation": args.autocorrelation}
    table, tests = measure(frame, config, args.fault or FAULTS, args.every_days, overrides)
    n = int((table["fault"] == "clean").sum())
    autocorrelation = drift.Thresholds.from_config(config.drift, overrides).autocorrelation
    print(
        f"{n} windows of {config.drift.window_days} days, every {args.every_days} days; severe_ks={config.drift.severe_ks}, "
        f"autocorrelation={str(autocorrelation).lower()}"
    )
    rates = table.groupby("fault", sort=False)[["share", "severe", "rule"]].mean().round(2)
    print("share of windows where each rule fired (clean: false alarms; a fault: detection):")
    print(rates.to_string())
    print("\nsingle-feature rule at other severe_ks (share of windows with a drifted feature at or above it):")
    sweep = {t: table.groupby("fault", sort=False)["D"].apply(lambda d, t=t: (d >= t).mean()) for t in SEVERE_RANGE}
    print(pd.DataFrame(sweep).round(2).to_string())
    print(
        f"\nclean windows, per feature: share with the test's p-value below {config.drift.ks_pvalue:g} (KS) / "
        f"{config.drift.chi2_pvalue:g} (chi-square), share drifted, median design effect used:"
    )
    calibration = tests.groupby("feature", sort=False).agg(
        significant=("significant", "mean"), drifted=("drifted", "mean"), design_effect=("design_effect", "median")
    )
    print(calibration.round(3).to_string())
    print(f"all features: {tests['significant'].mean():.3f} significant")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
