"""Benchmark: the project's drift computation against Evidently's DataDriftPreset, same data, one run.

    .venv/bin/python bench/drift.py [--rows 1000000]

1M reference rows and 1M current rows with 7 features (5 numeric, a 0/1 condition, a
4-valued string category); three of them shifted, one shifted negligibly (a 0.03 sd move,
"significant" on a million rows but not drift), the rest unchanged.

Timed for the project (this interpreter):
  * check: mlops.drift.feature_drift on the current rows against the stored reference
    profile, what drift_check does on every run;
  * profile + check: also building the reference profile from the raw reference rows
    (train does that once per model), so both sides start from the same raw data.
Timed for Evidently (DataDriftPreset, its defaults): Dataset.from_pandas of both frames,
Report.run and the result as a dict. Evidently needs pandas < 3, so it runs in its own
virtual environment, bench/.work/evidently-venv (created on first use, git-ignored), as a
subprocess reading the same arrays from bench/.work/. Then the features each one flags are
compared. Prints the times and ratios.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from mlops import drift  # noqa: E402
from mlops.config import DatasetConfig, load_config  # noqa: E402
from mlops.profile import build_profile  # noqa: E402

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
    frames = {}
    for name in ("reference", "current"):
        arrays = np.load(f"{work}/{name}.npz", allow_pickle=False)
        frames[name] = pd.DataFrame({c: arrays[c] for c in numeric + categorical})
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    t0 = time.perf_counter()
    current = Dataset.from_pandas(frames["current"], data_definition=definition)
    reference = Dataset.from_pandas(frames["reference"], data_definition=definition)
    result = Report([DataDriftPreset()]).run(current, reference).dict()
    seconds = time.perf_counter() - t0
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
    print(json.dumps({"seconds": seconds, "flagged": sorted(flagged), "methods": methods}))
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


def bench_dataset() -> DatasetConfig:
    columns = {name: {"type": "float"} for name in NUMERIC}
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


def project(reference: pd.DataFrame, current: pd.DataFrame, repeats: int) -> dict:
    dataset = bench_dataset()
    thresholds = drift.Thresholds.from_config(load_config(environ={}).drift)
    profile_times, check_times = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        profile = build_profile(reference, dataset)
        t1 = time.perf_counter()
        results = drift.feature_drift(dataset, profile, current, thresholds)
        t2 = time.perf_counter()
        profile_times.append(t1 - t0)
        check_times.append(t2 - t1)
    return {
        "check": min(check_times),
        "profile": min(profile_times),
        "flagged": sorted(r["feature"] for r in results if r["drifted"]),
        "details": {r["feature"]: f"PSI {r['psi']:.4g}, {r['test']} p {r['p_value']:.3g}" for r in results},
    }


def ensure_evidently_venv() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {VENV.relative_to(ROOT)} with {' '.join(EVIDENTLY_REQUIREMENTS)} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    check = subprocess.run([str(python), "-c", "import evidently, pandas"], capture_output=True)
    if check.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *EVIDENTLY_REQUIREMENTS], check=True)
    return python


def evidently(python: Path, reference: pd.DataFrame, current: pd.DataFrame) -> dict:
    for name, frame in (("reference", reference), ("current", current)):
        arrays = {c: frame[c].to_numpy(dtype=float) for c in NUMERIC}
        arrays.update({c: frame[c].to_numpy(dtype=str) for c in CATEGORICAL})  # fixed-width, no pickle
        np.savez(WORK / f"{name}.npz", **arrays)
    runner = WORK / "evidently_runner.py"
    runner.write_text(EVIDENTLY_RUNNER)
    out = subprocess.run(
        [str(python), str(runner), str(WORK), json.dumps(NUMERIC), json.dumps(CATEGORICAL)],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"evidently runner failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in each of reference and current")
    parser.add_argument("--repeats", type=int, default=3, help="project timings: best of this many")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    python = ensure_evidently_venv()
    reference, current = make_data(args.rows)
    print(f"{args.rows:,} reference rows, {args.rows:,} current rows, {reference.shape[1]} features")

    ours = project(reference, current, args.repeats)
    theirs = evidently(python, reference, current)

    print("\nper feature")
    for name in NUMERIC + CATEGORICAL:
        print(f"  {name:12} project: {ours['details'][name]:34} evidently: {theirs['methods'].get(name, '-')}")
    end_to_end = ours["profile"] + ours["check"]
    print("\nseconds")
    print(f"  project check against the stored profile   {ours['check']:8.3f}")
    print(f"  project profile + check (from raw rows)     {end_to_end:8.3f}")
    print(f"  evidently DataDriftPreset                   {theirs['seconds']:8.3f}")
    print("\nspeed-up (evidently seconds / project seconds)")
    print(f"  check against the stored profile            {theirs['seconds'] / ours['check']:8.1f}x")
    print(f"  profile + check                             {theirs['seconds'] / end_to_end:8.1f}x")
    same = ours["flagged"] == theirs["flagged"]
    print("\nflagged")
    print(f"  project:   {ours['flagged']}")
    print(f"  evidently: {theirs['flagged']}")
    print(f"  expected:  {sorted(EXPECTED_DRIFT)}")
    print(f"  same features flagged: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
