"""How the demo cuts a data set into drops: by the configured time column and frequency."""

from __future__ import annotations

import pandas as pd
import pytest
from demo import cut_into_periods, fault_periods, period_rule
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops.config import PROJECT_ROOT, load_config

TURKU = load_config(PROJECT_ROOT / "include" / "config" / "pipeline.yaml").dataset
BIKES = load_config(PROJECT_ROOT / "include" / "config" / "city_bikes_daily.yaml").dataset


def _read(dataset) -> pd.DataFrame:
    return pd.read_csv(PROJECT_ROOT / dataset.example_file, dtype=str, keep_default_na=False)


def test_hourly_data_is_cut_into_months_daily_into_quarters():
    assert period_rule("1h") == ("M", 6)
    assert period_rule("15min") == ("M", 6)
    assert period_rule("1D") == ("Q", 2)
    assert period_rule("7D") == ("Q", 2)


def test_turku_tells_the_same_story_history_then_18_months():
    files = cut_into_periods(_read(TURKU), TURKU, TURKU.example_history_until)
    names = [name for name, _ in files]
    assert names[0] == "history-until-2015-07"
    assert names[1:] == [f"2015-{m:02d}" for m in range(7, 13)] + [f"2016-{m:02d}" for m in range(1, 13)]
    # the default rule (the periods holding the first third of the rows) agrees
    assert cut_into_periods(_read(TURKU), TURKU)[0][0] == "history-until-2015-07"


def test_daily_data_set_is_cut_into_quarters_after_its_history():
    files = cut_into_periods(_read(BIKES), BIKES, BIKES.example_history_until)
    assert [name for name, _ in files] == [
        "history-until-2022-Q3",
        "2022-Q3",
        "2022-Q4",
        "2023-Q1",
        "2023-Q2",
        "2023-Q3",
        "2023-Q4",
        "2024-Q1",
        "2024-Q2",
    ]
    assert len(files[1][1]) == 92  # July to September


def test_a_missing_time_column_is_named():
    with pytest.raises(ValueError, match="Timestamp"):
        cut_into_periods(pd.DataFrame({"Date": ["2021-01-01"]}), TURKU)


times = st.datetimes(
    min_value=pd.Timestamp("2020-01-01").to_pydatetime(), max_value=pd.Timestamp("2023-12-31").to_pydatetime()
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.one_of(times.map(lambda t: t.strftime("%Y-%m-%d")), st.sampled_from(["", "not a date"])), max_size=60),
    st.sampled_from([None, "2021-Q2", "2022-Q1"]),
)
def test_every_row_lands_in_exactly_one_file_history_first(dates, history_until):
    raw = pd.DataFrame({"Date": dates, "row": [str(i) for i in range(len(dates))]})
    files = cut_into_periods(raw, BIKES, history_until)
    rows = [row for _, frame in files for row in frame["row"]]
    assert sorted(rows, key=int) == list(raw["row"])
    assert files[0][0].startswith("history-until-")
    periods = [name for name, _ in files[1:]]
    assert periods == sorted(periods)
    for name, frame in files[1:]:
        parsed = pd.to_datetime(frame["Date"], format="%Y-%m-%d")
        assert {f"{t.year}-Q{t.quarter}" for t in parsed} == {name}


def test_the_default_fault_goes_into_the_second_drop_only():
    names = [name for name, _ in cut_into_periods(_read(TURKU), TURKU, TURKU.example_history_until)]
    assert fault_periods(names, 6, drop=2) == {f"2016-{m:02d}" for m in range(1, 7)}
    assert fault_periods(names, 6, from_period="2016-11") == {"2016-11", "2016-12"}
    assert fault_periods(names, 6, drop=9) == set()


def test_the_demo_prints_estimated_and_realized_performance_and_why_realized_cannot_be_judged():
    import numpy as np
    from demo import performance_lines

    from mlops.monitoring import drift
    from mlops.monitoring.profile import calibration_profile

    config = load_config(PROJECT_ROOT / "include" / "config" / "city_bikes_daily.yaml")
    rng = np.random.default_rng(0)
    times = pd.date_range("2023-01-01", periods=90, freq="D")
    probability = rng.uniform(0, 1, 90)
    predictions = pd.DataFrame({"Date": times, "probability": probability, "predicted_label": probability >= 0.5})
    truth = (rng.uniform(0, 1, 90) < probability).astype(float)
    thresholds = drift.Thresholds.from_config(config.drift)
    calibration = drift.calibration_status({"calibration": calibration_profile(truth, probability)})
    holdout = {"accuracy": 0.7, "f1": 0.6, "brier": 0.2}
    # Labels arrived for the first 10 days only: too few to judge realized performance.
    labeled = pd.DataFrame({"Date": times, "busy_tomorrow": np.where(np.arange(90) < 10, truth, np.nan)})
    few = performance_lines(
        drift.champion_performance(
            config.dataset, labeled, predictions, pd.DataFrame(), holdout, thresholds, calibration
        )
    )
    assert few[0].startswith("estimated: accuracy ") and "on 90 predictions (80 without truth yet; " in few[0]
    assert few[1].startswith("realized:  accuracy ") and few[1].endswith("on 10 labelled predictions")
    assert few[3].startswith("realized performance cannot be judged: 10 labelled predictions < 45 (")
    assert few[3].endswith("[plot points: one per week]")
    labeled["busy_tomorrow"] = truth
    judged = performance_lines(
        drift.champion_performance(
            config.dataset, labeled, predictions, pd.DataFrame(), holdout, thresholds, calibration
        )
    )
    assert judged[3].startswith("realized performance judged on 90 predictions")
    assert performance_lines(None) == ["performance: not in the result"]
