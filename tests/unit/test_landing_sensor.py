"""The landing sensor pokes in its own process for a while before it defers."""

from __future__ import annotations

import time

from mlops.ingest.sensors import LandingObjectSensor


class _Counting(LandingObjectSensor):
    """A landing sensor whose listing finds a file at the `found_at`-th poke (never when None)."""

    def __init__(self, found_at: int | None, **kwargs):
        super().__init__(bucket_name="b", bucket_key="landing/*", aws_conn_id="none", task_id="s", **kwargs)
        self.found_at, self.pokes = found_at, 0

    def poke(self, context) -> bool:
        self.pokes += 1
        return self.found_at is not None and self.pokes >= self.found_at


def test_a_file_landing_before_the_deadline_is_found_without_deferring():
    sensor = _Counting(found_at=3, poke_interval=0.01, poke_before_defer=5)
    assert sensor.execute({}) is None  # found: returned, never deferred
    assert sensor.pokes == 3


def test_nothing_found_pokes_until_the_deadline_then_gives_up():
    sensor = _Counting(found_at=None, poke_interval=0.05)
    started = time.monotonic()
    assert sensor.poke_until({}, started + 0.3) is False
    assert 0.2 <= time.monotonic() - started < 1.0
    assert 4 <= sensor.pokes <= 7


def test_without_a_poke_window_one_poke_decides():
    sensor = _Counting(found_at=None, poke_interval=0.05)
    assert sensor.poke_until({}, time.monotonic()) is False
    assert sensor.pokes == 1
