"""Benchmark: the paired bootstrap of promote, vectorized (mlops.training.metrics) against the previous
resample-by-resample loop of scikit-learn metric calls (tests/bootstrap_reference.py).

    .venv/bin/python bench/promotion.py [--rows 1500] [--samples 1000]

A synthetic holdout (15% positives, two models, one with tied scores). Each implementation
computes what promote computes: the candidate against the champion and both baselines on
promotion.metric (ROC AUC) and against persistence on the guard metric (Brier): 4 paired
bootstraps. Prints both wall times side by side and the 1-minute load average (the machine
is shared: read the times with it).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "tests")]

from bootstrap_reference import paired_bootstrap_loop  # noqa: E402

from mlops.training.metrics import paired_bootstrap  # noqa: E402


def _comparisons(rows: int):
    rng = np.random.default_rng(0)
    y = (rng.random(rows) < 0.15).astype(int)
    candidate = np.clip(0.15 + 0.35 * y + rng.normal(0, 0.2, rows), 0, 1)
    champion = np.round(np.clip(0.15 + 0.25 * y + rng.normal(0, 0.25, rows), 0, 1), 2)
    persistence = np.where(rng.random(rows) < 0.8, y, 1 - y).astype(float)
    base_rate = np.full(rows, y.mean())
    return y, [
        ("roc_auc", candidate, champion),
        ("roc_auc", candidate, persistence),
        ("roc_auc", candidate, base_rate),
        ("neg_brier", candidate, persistence),
    ]


def _time(function, y, comparisons, samples: int) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    results = [
        function(metric, y, a, b, samples=samples, confidence=0.95, seed=42, threshold=0.5)
        for metric, a, b in comparisons
    ]
    return time.perf_counter() - start, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1500)
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args()
    y, comparisons = _comparisons(args.rows)
    load_before = os.getloadavg()[0]
    old_seconds, old = _time(paired_bootstrap_loop, y, comparisons, args.samples)
    new_seconds, new = _time(paired_bootstrap, y, comparisons, args.samples)
    load_after = os.getloadavg()[0]
    print(f"holdout {args.rows} rows, {args.samples} resamples, 4 paired bootstraps (as promote)")
    print(f"{'':12}{'loop (old)':>14}{'vectorized':>14}")
    print(f"{'seconds':12}{old_seconds:>14.2f}{new_seconds:>14.2f}   speed-up {old_seconds / new_seconds:.0f}x")
    for (metric, _, _), o, n in zip(comparisons, old, new, strict=True):
        print(f"{metric:12}CI [{o['ci_low']:+.4f}, {o['ci_high']:+.4f}]  [{n['ci_low']:+.4f}, {n['ci_high']:+.4f}]")
    print(f"load average (1 min) before {load_before:.2f}, after {load_after:.2f}, on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
