"""Injected faults change exactly the rows and column asked for, and bad requests say why."""

import numpy as np
import pandas as pd
import pytest

from mlops.monitoring import faults


def batch() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Timestamp": pd.date_range("2016-01-01", periods=4, freq="1D").strftime("%Y-%m-%d %H:%M:%S"),
            "Temperature_C": ["1.5", "", "-3", "10"],
            "Humidity": [0.5, 0.6, 0.7, 0.8],
        }
    )


def test_a_warm_sensor_adds_four_degrees_and_keeps_missing_values_missing():
    frame = batch().replace("", np.nan)
    out = faults.inject_fault(frame, faults.WARM_SENSOR)
    assert out["Temperature_C"].tolist()[0] == 5.5 and np.isnan(out["Temperature_C"][1])
    assert out["Temperature_C"].tolist()[2:] == [1.0, 14.0]
    assert out["Humidity"].equals(frame["Humidity"]) and frame["Temperature_C"][0] == "1.5"  # input unchanged


def test_a_fault_between_two_times_and_a_scale():
    fault = faults.parse_fault("Humidity:*1.2")
    fault = faults.Fault(fault.column, scale=fault.scale, start="2016-01-02", end="2016-01-04")
    out = faults.inject_fault(batch(), fault, time_column="Timestamp")
    assert out["Humidity"].tolist() == pytest.approx([0.5, 0.72, 0.84, 0.8])
    assert fault.describe() == "Humidity x 1.2 from 2016-01-02 to 2016-01-04"


def test_bad_faults_are_refused_with_the_reason():
    assert faults.parse_fault("Temperature_C:-2.5") == faults.Fault("Temperature_C", offset=-2.5)
    with pytest.raises(ValueError, match="expected 'column:\\+offset'"):
        faults.parse_fault("Temperature_C+4")
    with pytest.raises(ValueError, match="'x' is not a number"):
        faults.parse_fault("Temperature_C:+x")
    with pytest.raises(KeyError, match="Pressure"):
        faults.inject_fault(batch(), faults.Fault("Pressure", offset=1))
    frame = batch()
    frame.loc[2, "Temperature_C"] = "warm"
    with pytest.raises(ValueError, match="row 2, column Temperature_C: 'warm'"):
        faults.inject_fault(frame, faults.WARM_SENSOR)
