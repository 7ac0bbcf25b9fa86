"""Derive the label from the configuration: the source column `steps_ahead` periods later.

For the Turku example: rain_in_4h at time t is 1 when Current_weather_condition at t+4h is
in positive_values. The time index is gap-aware: the look-up is by timestamp, not by row
position, so a row whose t+4h observation is missing gets no label (NaN). The shipped
Future_weather_condition column (a shift(4) into the past) is never used.
"""

from __future__ import annotations

import pandas as pd

from mlops.config import DatasetConfig


def horizon(dataset: DatasetConfig) -> pd.Timedelta:
    """How far ahead the label looks: steps_ahead periods of the data set's frequency."""
    return dataset.label.steps_ahead * pd.Timedelta(dataset.frequency)


def add_label(frame: pd.DataFrame, dataset: DatasetConfig) -> pd.DataFrame:
    """Return a copy of frame with the label column (float: 1.0, 0.0 or NaN when unknown)."""
    time_col, source = dataset.time_column, dataset.label.source_column
    times = pd.to_datetime(frame[time_col])
    by_time = (
        pd.DataFrame({"t": times, "v": frame[source]})
        .dropna(subset=["t"])
        .drop_duplicates("t", keep="first")
        .set_index("t")["v"]
    )
    positive = by_time.isin(dataset.label.positive_values).astype(float).where(by_time.notna())
    future = positive.reindex(times + horizon(dataset))
    out = frame.copy()
    out[dataset.label.name] = future.to_numpy()
    return out
