"""Realistic data faults for demonstrations and tests of drift_check.

A fault is what an upstream system really sends by mistake and validation lets through:
a sensor that reads a constant too high (temperature +4 degrees C), a unit change within
the column's physical range. inject_fault returns a changed copy of a batch; the caller
(scripts/demo.py, a test) writes it where ingest picks it up, exactly like a normal batch.
"""

from __future__ import annotations

import dataclasses

import pandas as pd


@dataclasses.dataclass(frozen=True)
class Fault:
    """value -> value * scale + offset in one column, for rows in [start, end) of the time column."""

    column: str
    offset: float = 0.0
    scale: float = 1.0
    start: str | None = None
    end: str | None = None

    def describe(self) -> str:
        change = []
        if self.scale != 1.0:
            change.append(f"x {self.scale:g}")
        if self.offset:
            change.append(f"{self.offset:+g}")
        when = f" from {self.start or 'the start'} to {self.end or 'the end'}" if self.start or self.end else ""
        return f"{self.column} {' '.join(change) or 'unchanged'}{when}"


# A temperature sensor that reads 4 degrees too high: within every validation range.
WARM_SENSOR = Fault(column="Temperature_C", offset=4.0)
# A barometer that reports station pressure instead of pressure reduced to sea level: about
# 1.2 hPa less per 10 m of altitude, -10 hPa for a station at about 80 m. Within range.
STATION_PRESSURE = Fault(column="Pressure_millibars", offset=-10.0)

# The fault `make demo` injects into one drop, per data set (dataset.name). A +4 degree
# sensor is as realistic but, in 30-day windows of this weather, no larger than a warm or
# cold month: bench/drift_rates.py measures which faults the rule can tell from the weather.
DEMO_FAULTS = {"port_of_turku_weather": STATION_PRESSURE}


def demo_fault(dataset_name: str) -> Fault | None:
    """The fault the demo injects by default into a data set, None when it has none."""
    return DEMO_FAULTS.get(dataset_name)


def parse_fault(text: str) -> Fault:
    """A fault from 'column:+offset' or 'column:*scale' (e.g. 'Temperature_C:+4', 'Humidity:*1.2').

    Raises ValueError naming the text when it is not of that form.
    """
    column, sep, change = text.partition(":")
    if not sep or not column or len(change) < 2 or change[0] not in "+-*":
        raise ValueError(f"fault {text!r}: expected 'column:+offset', 'column:-offset' or 'column:*scale'")
    try:
        number = float(change[1:])
    except ValueError:
        raise ValueError(f"fault {text!r}: {change[1:]!r} is not a number") from None
    if change[0] == "*":
        return Fault(column=column, scale=number)
    return Fault(column=column, offset=number if change[0] == "+" else -number)


def inject_fault(frame: pd.DataFrame, fault: Fault, time_column: str | None = None) -> pd.DataFrame:
    """A copy of frame with the fault applied to its column (missing values stay missing).

    frame: a batch as read from a CSV (the column may be text: it is parsed as numbers).
    time_column: needed only when the fault has start or end. Raises KeyError naming the
    column when frame does not have it, ValueError when a value is present but not a number.
    """
    if fault.column not in frame:
        raise KeyError(f"fault column {fault.column!r} is not in the batch (columns: {', '.join(map(str, frame))})")
    out = frame.copy()
    values = pd.to_numeric(out[fault.column], errors="coerce")
    # Blank text is a missing value in a CSV, not a bad number.
    present = out[fault.column].notna() & (out[fault.column].astype(str).str.strip() != "")
    bad = values.isna() & present
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise ValueError(f"row {row}, column {fault.column}: {out[fault.column].iloc[row]!r} is not a number")
    selected = pd.Series(True, index=out.index)
    if fault.start or fault.end:
        if time_column is None:
            raise ValueError("a fault with start or end needs the time column")
        times = pd.to_datetime(out[time_column])
        if fault.start:
            selected &= times >= pd.Timestamp(fault.start)
        if fault.end:
            selected &= times < pd.Timestamp(fault.end)
    out[fault.column] = values.where(~selected, values * fault.scale + fault.offset)
    return out
