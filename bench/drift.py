"""Benchmark: the project's drift computation against Evidently's DataDriftPreset, same data, one run.

    .venv/bin/python bench/drift.py [--rows 1000000] [--repeats 3] [--power-trials 100] [--no-evidently]

1M reference rows and 1M current rows with 7 features (5 numeric, a 0/1 condition, a
4-valued string category); three of them shifted, one shifted negligibly (a 0.03 sd move,
"significant" on a million rows but not drift), the rest unchanged.

Timed for the project (this interpreter):
  * check: mlops.monitoring.drift.feature_drift on the current rows against the stored reference
    profile, what drift_check does on every run;
  * profile + check: also building the reference profile from the raw reference rows
    (train does that once per model), so both sides start from the same raw data.
Timed for Evidently (DataDriftPreset, its defaults): Dataset.from_pandas of both frames,
Report.run and the result as a dict. Evidently needs pandas < 3, so it runs in its own
virtual environment, bench/.work/evidently-venv (created on first use, git-ignored), as a
subprocess reading the same arrays from bench/.work/. Then the features each one flags are
compared. Also timed, on the same arrays: a naive numpy/scipy check (np.histogram PSI and
scipy.stats.ks_2samp on the raw rows, chi-square for the categories) and one plain numpy pass
over every array (a sum: the memory-bandwidth floor). Every side runs --repeats times and
the median is printed (Evidently repeats inside its own process, so it pays its import once,
like the project). The load average is printed before and after: the machine is shared.

Detection power: for a mean shift of 0.1 .. 1.0 reference standard deviations in one normal
feature (reference --power-reference rows, current --power-current rows: a year and a
30-day window of hourly data by default), the share of --power-trials trials that each rule
flags: the project's (PSI >= drift.psi_threshold and binned KS p < drift.ks_pvalue), plain
scipy KS on the raw rows at the same p-value, and Evidently's default per-column rule (its
own trials, fewer: each is a Report run). Shift 0 gives the false-alarm rate.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from mlops.config import DatasetConfig, load_config  # noqa: E402
from mlops.monitoring import drift  # noqa: E402
from mlops.monitoring.profile import build_profile  # noqa: E402

WORK = ROOT / "bench" / ".work"
VENV = WORK / "evidently-venv"
EVIDENTLY_REQUIREMENTS = ["evidently==0.7.23", "pandas<3"]
NUMERIC = ["temperature", "humidity", "wind_speed", "pressure", "visibility"]
CATEGORICAL = ["condition", "site"]
EXPECTED_DRIFT = {"temperature", "humidity", "condition"}

EVIDENTLY_RUNNER = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np, pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    work, numeric, categorical = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    repeats = int(sys.argv[4])

    def run(reference_frame, current_frame, numeric, categorical):
        definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
        t0 = time.perf_counter()
        current = Dataset.from_pandas(current_frame, data_definition=definition)
        reference = Dataset.from_pandas(reference_frame, data_definition=definition)
        result = Report([DataDriftPreset()]).run(current, reference).dict()
        return time.perf_counter() - t0, result

    def flags(result):
        flagged, methods = [], {}
        for metric in result["metrics"]:
            config = metric["config"]
            if "column" not in config:
                continue
            method, threshold, value = config["method"], config["threshold"], metric["value"]
            # Distances drift at or above the threshold; p-values of tests below it.
            is_distance = any(word in method.lower() for word in ("distance", "psi", "divergence"))
            if (value >= threshold) if is_distance else (value < threshold):
                flagged.append(config["column"])
            methods[config["column"]] = f"{method} {value:.4g} (threshold {threshold})"
        return flagged, methods

    if sys.argv[5:] == ["power"]:
        arrays = np.load(f"{work}/power.npz", allow_pickle=False)
        shifts, trials = arrays["shifts"], int(arrays["trials"])
        rates = {}
        for i, shift in enumerate(shifts):
            hits = 0
            for t in range(trials):
                ref = pd.DataFrame({"x": arrays[f"ref_{i}_{t}"]})
                cur = pd.DataFrame({"x": arrays[f"cur_{i}_{t}"]})
                hits += "x" in flags(run(ref, cur, ["x"], [])[1])[0]
            rates[f"{shift:.1f}"] = hits / trials
        print(json.dumps({"rates": rates, "trials": trials}))
        sys.exit(0)

    frames = {}
    for name in ("reference", "current"):
        arrays = np.load(f"{work}/{name}.npz", allow_pickle=False)
        frames[name] = pd.DataFrame({c: arrays[c] for c in numeric + categorical})
    times = []
    for _ in range(repeats):
        seconds, result = run(frames["reference"], frames["current"], numeric, categorical)
        times.append(seconds)
    flagged, methods = flags(result)
    print(json.dumps({"seconds": sorted(times)[len(times) // 2], "times": times, "flagged": sorted(flagged), "methods": methods}))
    """
)


def make_data(rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def frame(current: bool) -> pd.DataFrame:
        visibility = np.clip(rng.normal(12, 3, rows), 0, None)
        visibility[rng.uniform(size=rows) < 0.01] = np.nan  # 1% missing on both sides
        return pd.DataFrame(
            {
                "temperature": rng.normal(-4 if current else 17, 5, rows),  # shifted: winter
                "humidity": rng.normal(0.78 if current else 0.70, 0.1, rows),  # shifted by 0.8 sd
                "wind_speed": rng.gamma(2.0, 6.0, rows),
                "pressure": rng.normal(1013 + (0.24 if current else 0.0), 8, rows),  # 0.03 sd: negligible
                "visibility": visibility,
                "condition": (rng.uniform(size=rows) < (0.5 if current else 0.2)).astype(np.int64),  # rain share
                "site": rng.choice(np.array(["north", "south", "east", "west"]), rows, p=[0.4, 0.3, 0.2, 0.1]),
            }
        )

    return frame(current=False), frame(current=True)


RANGES = {
    "temperature": (-60, 60),
    "humidity": (0, 1),
    "wind_speed": (0, 250),
    "pressure": (870, 1085),
    "visibility": (0, 100),
}


def bench_dataset() -> DatasetConfig:
    # Physical ranges as the example configures them: the fixed grid of the batch profiles.
    columns = {name: {"type": "float", "min": RANGES[name][0], "max": RANGES[name][1]} for name in NUMERIC}
    columns.update({"time": {"type": "datetime"}, "condition": {"type": "string"}, "site": {"type": "string"}})
    return DatasetConfig.model_validate(
        {
            "name": "bench",
            "columns": columns,
            "time_column": "time",
            "time_format": "%Y-%m-%d %H:%M:%S",
            "frequency": "1h",
            "label": {"name": "y", "source_column": "condition", "positive_values": ["1"], "steps_ahead": 1},
            "features": NUMERIC + CATEGORICAL,
        }
    )


def median_seconds(function, repeats: int) -> tuple[float, object]:
    """(median wall seconds of repeats calls, the last call's result)."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def project(reference: pd.DataFrame, current: pd.DataFrame, repeats: int) -> dict:
    dataset = bench_dataset()
    thresholds = drift.Thresholds.from_config(load_config(environ={}).drift)
    profile_seconds, profile = median_seconds(lambda: build_profile(reference, dataset), repeats)
    check_seconds, results = median_seconds(lambda: drift.feature_drift(dataset, profile, current, thresholds), repeats)
    return {
        "check": check_seconds,
        "profile": profile_seconds,
        "flagged": sorted(r["feature"] for r in results if r["drifted"]),
        "details": {r["feature"]: f"PSI {r['psi']:.4g}, {r['test']} p {r['p_value']:.3g}" for r in results},
    }


def with_times(frame: pd.DataFrame, days: int = 30) -> pd.DataFrame:
    """frame with a time column spreading its rows evenly over `days` days (a drift window)."""
    start = pd.Timestamp("2030-06-01").value
    stamps = np.linspace(start, start + days * 86_400 * 10**9, len(frame), endpoint=False).astype("int64")
    return frame.assign(time=pd.to_datetime(stamps))


def from_profiles(reference: pd.DataFrame, current: pd.DataFrame, repeats: int, batches: int = 30) -> dict:
    """The check from stored batch profiles: profile each of `batches` batches once (ingest's
    share, timed apart), then per run merge them and compute drift: no row is read."""
    from mlops.monitoring import batch_profile

    dataset = bench_dataset()
    thresholds = drift.Thresholds.from_config(load_config(environ={}).drift)
    profile = build_profile(reference, dataset)
    timed = with_times(current)
    t0 = time.perf_counter()
    bounds = np.linspace(0, len(timed), batches + 1).astype(int)
    parts = [
        batch_profile.batch_profile(timed.iloc[a:b], dataset) for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    ingest = time.perf_counter() - t0
    seconds, (results, _) = median_seconds(
        lambda: drift.feature_drift_from_profile(dataset, profile, batch_profile.merge(parts), thresholds), repeats
    )
    return {
        "check": seconds,
        "ingest": ingest,
        "flagged": sorted(r["feature"] for r in results if r["drifted"]),
        "bound": max(r["ks_error_bound"] for r in results),
    }


def naive_check(reference: pd.DataFrame, current: pd.DataFrame) -> list[str]:
    """PSI on reference deciles (np.histogram) and scipy KS on raw rows; chi-square for categories."""
    from scipy import stats

    thresholds = drift.Thresholds.from_config(load_config(environ={}).drift)
    flagged = []
    for name in NUMERIC:
        ref, cur = reference[name].dropna().to_numpy(), current[name].dropna().to_numpy()
        edges = np.quantile(ref, np.linspace(0, 1, 11))
        edges[0], edges[-1] = -np.inf, np.inf
        value = drift.psi(np.histogram(ref, edges)[0], np.histogram(cur, edges)[0])
        if value >= thresholds.psi and stats.ks_2samp(ref, cur, method="asymp").pvalue < thresholds.ks_pvalue:
            flagged.append(name)
    for name in CATEGORICAL:
        ref, cur = reference[name].astype(str).value_counts(), current[name].astype(str).value_counts()
        categories = sorted(set(ref.index) | set(cur.index))
        counts = [[ref.get(c, 0) for c in categories], [cur.get(c, 0) for c in categories]]
        value = drift.psi(counts[0], counts[1])
        if value >= thresholds.psi and stats.chi2_contingency(counts, correction=False).pvalue < thresholds.chi2_pvalue:
            flagged.append(name)
    return sorted(flagged)


def one_pass_floor(reference: pd.DataFrame, current: pd.DataFrame, repeats: int) -> float:
    """Median seconds of one numpy sum over every array of both frames (categories as codes)."""
    arrays = []
    for frame in (reference, current):
        arrays += [frame[c].to_numpy(dtype=float) for c in NUMERIC]
        arrays += [pd.factorize(frame[c])[0] for c in CATEGORICAL]
    seconds, _ = median_seconds(lambda: [np.nansum(a) for a in arrays], repeats)
    return seconds


def ensure_evidently_venv() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {VENV.relative_to(ROOT)} with {' '.join(EVIDENTLY_REQUIREMENTS)} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    check = subprocess.run([str(python), "-c", "import evidently, pandas"], capture_output=True)
    if check.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *EVIDENTLY_REQUIREMENTS], check=True)
    return python


def run_evidently(python: Path, *extra: str) -> dict:
    runner = WORK / "evidently_runner.py"
    runner.write_text(EVIDENTLY_RUNNER)
    out = subprocess.run(
        [str(python), str(runner), str(WORK), json.dumps(NUMERIC), json.dumps(CATEGORICAL), *extra],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"evidently runner failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def evidently(python: Path, reference: pd.DataFrame, current: pd.DataFrame, repeats: int) -> dict:
    for name, frame in (("reference", reference), ("current", current)):
        arrays = {c: frame[c].to_numpy(dtype=float) for c in NUMERIC}
        arrays.update({c: frame[c].to_numpy(dtype=str) for c in CATEGORICAL})  # fixed-width, no pickle
        np.savez(WORK / f"{name}.npz", **arrays)
    return run_evidently(python, str(repeats))


POWER_SHIFTS = [round(0.1 * i, 1) for i in range(11)]  # 0.0 .. 1.0 reference sd


def power_samples(shift: float, trial: int, n_reference: int, n_current: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([int(shift * 10), trial])
    return rng.normal(0, 1, n_reference), rng.normal(shift, 1, n_current)


def detection_power(trials: int, n_reference: int, n_current: int) -> dict[str, dict[str, float]]:
    """Share of trials flagged per shift: the project's rule and plain scipy KS at the same p-value."""
    from scipy import stats

    dataset = bench_dataset()
    thresholds = drift.Thresholds.from_config(load_config(environ={}).drift)
    rates = {"project": {}, "scipy KS": {}}
    for shift in POWER_SHIFTS:
        ours = ks = 0
        for trial in range(trials):
            ref, cur = power_samples(shift, trial, n_reference, n_current)
            profile = build_profile(
                pd.DataFrame({"temperature": ref}), dataset.model_copy(update={"features": ["temperature"]})
            )
            result = drift.numeric_feature_drift(
                "temperature", profile["features"]["temperature"], pd.Series(cur), thresholds
            )
            ours += result["drifted"]
            ks += stats.ks_2samp(ref, cur, method="asymp").pvalue < thresholds.ks_pvalue
        rates["project"][f"{shift:.1f}"] = ours / trials
        rates["scipy KS"][f"{shift:.1f}"] = ks / trials
    return rates


def evidently_power(python: Path, trials: int, n_reference: int, n_current: int) -> dict[str, float]:
    arrays = {"shifts": np.array(POWER_SHIFTS), "trials": np.array(trials)}
    for i, shift in enumerate(POWER_SHIFTS):
        for trial in range(trials):
            arrays[f"ref_{i}_{trial}"], arrays[f"cur_{i}_{trial}"] = power_samples(shift, trial, n_reference, n_current)
    np.savez(WORK / "power.npz", **arrays)
    return run_evidently(python, "1", "power")["rates"]


def smallest_detected(rates: dict[str, float], power: float = 0.8) -> str:
    """The smallest shift flagged in at least `power` of the trials."""
    for shift, rate in rates.items():
        if float(shift) > 0 and rate >= power:
            return shift
    return "> 1.0"


def print_power(rates: dict[str, dict[str, float]], trials: dict[str, int], n_reference: int, n_current: int) -> None:
    print(
        f"\ndetection power: mean shift of one normal feature, {n_reference:,} reference and {n_current:,} current rows"
    )
    print("  share of trials flagged (shift 0.0 = false-alarm rate)")
    print("  shift (sd) " + "".join(f"{name + f' ({trials[name]} trials)':>26}" for name in rates))
    for shift in POWER_SHIFTS:
        key = f"{shift:.1f}"
        print(f"  {key:>10} " + "".join(f"{rates[name][key]:>26.2f}" for name in rates))
    for name in rates:
        print(f"  {name}: smallest shift flagged in >= 80% of trials: {smallest_detected(rates[name])} sd")


def print_results(args, ours, profiled, naive_seconds, naive_flagged, floor, theirs, flat) -> None:
    """The timing and flagged-features tables of main()."""
    print("\nper feature")
    for name in NUMERIC + CATEGORICAL:
        other = theirs["methods"].get(name, "-") if theirs else "-"
        print(f"  {name:12} project: {ours['details'][name]:34} evidently: {other}")
    end_to_end = ours["profile"] + ours["check"]
    print("\nseconds (median)")
    print(f"  one numpy pass over every array (floor)     {floor:8.3f}")
    print(
        f"  project check against the stored profile    {ours['check']:8.3f}   {ours['check'] / floor:6.1f}x the floor"
    )
    print(f"  project profile + check (from raw rows)     {end_to_end:8.3f}   {end_to_end / floor:6.1f}x the floor")
    print(
        f"  naive numpy/scipy PSI + KS on raw rows      {naive_seconds:8.3f}   {naive_seconds / floor:6.1f}x the floor"
    )
    print(
        f"  project check from 30 stored batch profiles {profiled['check']:8.3f}   {profiled['check'] / floor:6.1f}x the floor"
        f"   (profiling the batches once, at ingest: {profiled['ingest']:.2f} s; KS error bound {profiled['bound']:.2g})"
    )
    if flat:
        print(
            f"  same check, {args.flat_rows:,} current rows    {flat['check']:8.3f}   "
            f"(profiling at ingest: {flat['ingest']:.2f} s)"
        )
    if theirs:
        print(
            f"  evidently DataDriftPreset                   {theirs['seconds']:8.3f}   (runs: {', '.join(f'{t:.1f}' for t in theirs['times'])})"
        )
        print("\nspeed-up (evidently seconds / project seconds)")
        print(f"  check against the stored profile            {theirs['seconds'] / ours['check']:8.1f}x")
        print(f"  profile + check                             {theirs['seconds'] / end_to_end:8.1f}x")
    print("\nflagged")
    print(f"  project:   {ours['flagged']}")
    print(f"  profiles:  {profiled['flagged']}")
    print(f"  naive:     {naive_flagged}")
    if theirs:
        print(f"  evidently: {theirs['flagged']}")
    print(f"  expected:  {sorted(EXPECTED_DRIFT)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in each of reference and current")
    parser.add_argument("--repeats", type=int, default=3, help="every timing: median of this many runs")
    parser.add_argument("--power-trials", type=int, default=100, help="trials per shift (project and scipy)")
    parser.add_argument("--evidently-power-trials", type=int, default=10, help="trials per shift for Evidently")
    parser.add_argument("--power-reference", type=int, default=8760, help="reference rows in the power table")
    parser.add_argument("--power-current", type=int, default=720, help="current rows in the power table")
    parser.add_argument("--no-evidently", action="store_true", help="skip Evidently (no extra venv)")
    parser.add_argument("--flat-rows", type=int, default=10_000_000, help="current rows of the second profile check")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    python = None if args.no_evidently else ensure_evidently_venv()
    reference, current = make_data(args.rows)
    print(
        f"{args.rows:,} reference rows, {args.rows:,} current rows, {reference.shape[1]} features; median of {args.repeats} runs each"
    )

    ours = project(reference, current, args.repeats)
    profiled = from_profiles(reference, current, args.repeats)
    naive_seconds, naive_flagged = median_seconds(lambda: naive_check(reference, current), args.repeats)
    floor = one_pass_floor(reference, current, args.repeats)
    theirs = evidently(python, reference, current, args.repeats) if python else None
    flat = None
    if args.flat_rows:
        big = make_data(args.flat_rows, seed=1)[1]
        flat = from_profiles(reference, big, args.repeats)
        del big

    print_results(args, ours, profiled, naive_seconds, naive_flagged, floor, theirs, flat)

    rates = detection_power(args.power_trials, args.power_reference, args.power_current)
    trials = {"project": args.power_trials, "scipy KS": args.power_trials}
    if python:
        rates["evidently"] = evidently_power(
            python, args.evidently_power_trials, args.power_reference, args.power_current
        )
        trials["evidently"] = args.evidently_power_trials
    print_power(rates, trials, args.power_reference, args.power_current)
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if ours["flagged"] == sorted(EXPECTED_DRIFT) else 1


if __name__ == "__main__":
    sys.exit(main())
