"""The warehouse text of prediction times: a cast, equal to pc.strftime with TIMESTAMP_FORMAT
(which it replaced: ~10x faster on 1M rows) for every whole-second time of years 1-9999."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops.io import warehouse
from mlops.scoring import batch as scoring

TIMES = st.lists(
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59)), max_size=50
)


@settings(max_examples=200, deadline=None)
@given(times=TIMES, unit=st.sampled_from(["s", "ms", "us"]), tz=st.sampled_from([None, "UTC"]))
def test_time_text_is_the_strftime_of_every_whole_second(times, unit, tz):
    seconds = [t.replace(microsecond=0) for t in times]
    column = pa.array(seconds, pa.timestamp("s")).cast(pa.timestamp(unit)).cast(pa.timestamp(unit, tz=tz))
    expected = [t.isoformat(sep=" ") for t in seconds]  # TIMESTAMP_FORMAT, years zero-padded
    assert scoring.time_text(column).to_pylist() == expected
    old = pc.strftime(column.cast(pa.timestamp("s", tz=tz)), format=warehouse.TIMESTAMP_FORMAT)  # the way it was
    assert old.to_pylist() == expected


def test_time_text_refuses_fractions_of_a_second():
    with pytest.raises(pa.ArrowInvalid):
        scoring.time_text(pa.array([dt.datetime(2020, 1, 1, 0, 0, 0, 500_000)], pa.timestamp("ms")))
