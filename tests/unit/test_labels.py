"""The label is the source column steps_ahead periods later, looked up by time (gap-aware)."""

import math

import pandas as pd

from mlops.config import load_config
from mlops.labels import add_label

DATASET = load_config(environ={}).dataset


def _frame(hours_and_conditions):
    base = pd.Timestamp("2016-01-01 00:00:00")
    return pd.DataFrame(
        {
            "Timestamp": [base + pd.Timedelta(hours=h) for h, _ in hours_and_conditions],
            "Current_weather_condition": [c for _, c in hours_and_conditions],
        }
    )


def test_label_is_condition_four_hours_ahead_not_behind():
    frame = _frame([(0, 0), (1, 0), (2, 0), (3, 0), (4, 1), (5, 0), (6, 0), (7, 0), (8, 0)])
    labels = add_label(frame, DATASET)["rain_in_4h"].tolist()
    # t=0 sees the rain at t=4; t=4 (raining now) sees no rain at t=8; last 4 hours unknown.
    assert labels[:5] == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert all(math.isnan(v) for v in labels[5:])


def test_gap_removes_the_label_instead_of_shifting_rows():
    # Hour 5 is missing: t=1 has no t+4 observation, and t=2 must look at hour 6, not row 5.
    frame = _frame([(0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (6, 1), (7, 0)])
    labels = add_label(frame, DATASET)["rain_in_4h"].tolist()
    assert labels[0] == 0.0
    assert math.isnan(labels[1])
    assert labels[2] == 1.0
    assert labels[3] == 0.0


def test_unsorted_input_keeps_row_order_and_labels():
    frame = _frame([(4, 1), (0, 0), (8, 0)])
    labels = add_label(frame, DATASET)["rain_in_4h"].tolist()
    assert labels[0] == 0.0  # hour 4 -> hour 8 dry
    assert labels[1] == 1.0  # hour 0 -> hour 4 rain
    assert math.isnan(labels[2])
