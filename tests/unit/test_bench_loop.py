"""bench/loop.py's arithmetic: covered time, phase shares, the shifted bench files."""

from __future__ import annotations

import importlib.util
import io
from datetime import UTC, datetime

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlops.config import PROJECT_ROOT, get_config

_SPEC = importlib.util.spec_from_file_location("bench_loop", PROJECT_ROOT / "bench" / "loop.py")
loop = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(loop)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def test_covered_counts_overlaps_once_and_clips_to_the_window():
    assert loop._covered([(0, 4), (2, 6), (8, 20)], 1, 10) == pytest.approx(5 + 2)
    assert loop._covered([], 0, 10) == 0


@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0, 50)), max_size=8), st.floats(0, 100), st.floats(0, 100))
def test_covered_never_exceeds_the_window_and_matches_a_grid_count(spans, lo, width):
    intervals = [(a, a + d) for a, d in spans]
    hi = lo + width
    covered = loop._covered(intervals, lo, hi)
    assert 0 <= covered <= width + 1e-9
    grid = [lo + (i + 0.5) * width / 400 for i in range(400)]
    approx = sum(any(a <= t < b for a, b in intervals) for t in grid) * width / 400
    assert covered == pytest.approx(approx, abs=width / 400 * 2 * (len(intervals) + 1) + 1e-9)


def test_phase_shares_split_the_window_into_task_sensor_queued_and_scheduling():
    tis = [
        {"task_id": "wait_for_landing", "start_date": _iso(0), "end_date": _iso(4), "queued_when": None},
        {"task_id": "list_objects", "start_date": _iso(5), "end_date": _iso(6), "queued_when": _iso(4.5)},
        {"task_id": "ingest_files", "start_date": _iso(7), "end_date": _iso(9), "queued_when": _iso(6.5)},
    ]
    shares = loop.phase_shares(tis, 2, 10)
    assert shares == pytest.approx({"task": 3 / 8, "sensor": 2 / 8, "queued": 1 / 8, "scheduling": 2 / 8})


def test_a_bench_file_lands_whole_in_its_own_period():
    cfg = get_config()
    dataset = cfg.dataset
    stamps = pd.date_range("2016-01-01", "2016-01-31 23:00", freq="h")  # 31 days into a 28-day February
    template = pd.DataFrame({dataset.time_column: stamps.strftime(dataset.time_format), "Temperature_C": "1.5"})
    body = loop.period_file(cfg, template, pd.Period("2019-02", "M"))
    shifted = pd.read_csv(io.BytesIO(body), dtype=str)
    times = pd.to_datetime(shifted[dataset.time_column], format=dataset.time_format)
    assert times.min() == pd.Timestamp("2019-02-01") and times.max() == pd.Timestamp("2019-02-28 23:00")
    assert len(shifted) == 28 * 24 and set(shifted["Temperature_C"]) == {"1.5"}
