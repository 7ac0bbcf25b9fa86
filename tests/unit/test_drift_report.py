"""The drift report is one self-contained HTML file with a plot per feature."""

import re

import numpy as np
import pandas as pd

from mlops.config import load_config
from mlops.monitoring import drift, drift_report
from mlops.monitoring.profile import build_profile

CONFIG = load_config(environ={})
DATASET = CONFIG.dataset


def _result(shift: float, holdout: dict | None = None) -> dict:
    rng = np.random.default_rng(0)
    n = 2000
    frame = pd.DataFrame({name: rng.normal(10, 2, n) for name in DATASET.features})
    frame[DATASET.time_column] = pd.date_range("2030-01-01", periods=n, freq="1h")
    frame[DATASET.label.source_column] = rng.integers(0, 2, n)
    profile = build_profile(frame.iloc[:1000], DATASET, scores=rng.uniform(0, 1, 1000))
    current = frame.iloc[1000:].copy()
    current["Temperature_C"] += shift
    predictions = pd.DataFrame(
        {DATASET.time_column: current[DATASET.time_column], "probability": rng.uniform(0, 1, 1000)}
    )
    predictions["predicted_label"] = (predictions["probability"] > 0.5).astype(int)
    result = drift.compute_drift(
        DATASET,
        profile,
        current,
        drift.Thresholds.from_config(CONFIG.drift),
        champion_predictions=predictions,
        challenger_predictions=predictions.assign(probability=0.5),
        holdout=holdout,
    )
    result.update(
        drift_run_id="manual__x",
        airflow_run_id="manual__x",
        window={"start": "2030-02-11 16:00:00", "end": "2030-03-25 07:00:00", "days": 42},
        champion={"model_name": "m", "version": "3", "run_id": "r", "profile_uri": "u"},
        reference_created_at="2030-01-01T00:00:00",
        created_at="2030-03-25 08:00:00",
    )
    return drift.json_safe(result)


def test_report_embeds_a_png_per_feature_and_names_the_drifted_one():
    result = _result(shift=8.0, holdout={"accuracy": 0.8, "f1": 0.7, "brier": 0.2})
    page = drift_report.render(result)
    assert page.startswith("<!DOCTYPE html>")
    images = re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', page)
    # one per feature, the scores and the performance panel
    assert len(images) == len(DATASET.features) + 2
    assert "Temperature_C (drifted)" in page
    assert "performance" in page.lower() and "challenger realized" in page
    assert "http" not in page.replace("http-equiv", "")  # nothing fetched from elsewhere


def test_report_without_predictions_says_so():
    result = _result(shift=0.0)
    result["scores"] = None
    result["performance"] = {"champion": None, "challenger": None, "holdout": {}, "drops": []}
    page = drift_report.render(result)
    assert "No champion predictions in the window." in page
    assert "no drift rule fired" in page


def test_report_says_where_the_feature_counts_came_from():
    result = _result(shift=0.0)
    result["source"] = {"kind": "batch profiles", "notes": ["no fixed grid, read from rows: Humidity"]}
    page = drift_report.render(result)
    assert "Feature counts from batch profiles." in page and "read from rows: Humidity." in page


def test_report_shows_the_raw_and_the_season_adjusted_shift_and_the_fallback():
    # The profile covers January and February 2030 only; the window reaches into March,
    # which is compared with its covered neighbour, February.
    result = _result(shift=8.0)
    page = drift_report.render(result)
    assert "raw (whole reference)" in page and "not explained by season" in page
    assert "(season-adjusted)" in page
    assert "fewer than 100 rows for month 3: compared with month 2 there" in page
    temperature = result["features"][0]
    assert (
        f"<td>{temperature['raw']['psi']:.3f}</td>" in page and f"<td>{temperature['seasonal']['psi']:.3f}</td>" in page
    )
