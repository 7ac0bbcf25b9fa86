"""Training logic without services: split, pipelines, settings, and the model's self-containment."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from mlops.config import load_config
from mlops.training import pipeline as training

CFG = load_config(environ={})
DATASET = CFG.dataset


def observations(hours: int, seed: int = 0, start="2016-01-01 00:00:00") -> pd.DataFrame:
    """Hourly observations as the warehouse returns them (text time, batch_id), rain in spells."""
    rng = np.random.default_rng(seed)
    times = pd.date_range(start, periods=hours, freq="h")
    rain = (np.sin(np.arange(hours) / 9.0) + rng.normal(0, 0.5, hours) > 0).astype(int)
    return pd.DataFrame(
        {
            "Timestamp": times.strftime("%Y-%m-%d %H:%M:%S"),
            "Location": "x",
            "Temperature_C": rng.normal(10, 5, hours),
            "Humidity": np.clip(0.6 + 0.3 * rain + rng.normal(0, 0.05, hours), 0, 1),
            "Wind_speed_kmph": rng.gamma(2, 5, hours),
            "Wind_bearing_degrees": rng.integers(0, 360, hours),
            "Visibility_km": 15 - 5 * rain + rng.normal(0, 1, hours),
            "Pressure_millibars": np.where(rng.random(hours) < 0.05, np.nan, rng.normal(1010, 8, hours)),
            "Current_weather_condition": rain,
            # the shipped column is the condition 4 hours EARLIER; it must never matter
            "Future_weather_condition": np.roll(rain, 4),
            "batch_id": "b1",
        }
    )


def test_prepare_labels_four_hours_ahead_and_drops_unlabelled_rows():
    raw = observations(48)
    prepared = training.prepare(raw, DATASET)
    assert len(prepared) == 44  # the last 4 hours have no t+4h observation
    assert prepared["rain_in_4h"].tolist() == raw["Current_weather_condition"].iloc[4:].tolist()
    assert pd.api.types.is_datetime64_any_dtype(prepared["Timestamp"])


def test_prepare_ignores_future_weather_condition():
    raw = observations(48)
    scrambled = raw.assign(Future_weather_condition=1 - raw["Future_weather_condition"])
    pd.testing.assert_series_equal(
        training.prepare(raw, DATASET)["rain_in_4h"], training.prepare(scrambled, DATASET)["rain_in_4h"]
    )


def test_split_is_time_ordered_with_the_most_recent_rows_held_out_and_purged():
    prepared = training.prepare(observations(1000).sample(frac=1, random_state=1), DATASET)  # unsorted input
    train, holdout = training.split(prepared, DATASET, 0.2)
    assert len(holdout) == int(np.ceil(len(prepared) * 0.2))
    assert train["Timestamp"].is_monotonic_increasing and holdout["Timestamp"].is_monotonic_increasing
    assert holdout["Timestamp"].tolist() == prepared["Timestamp"].iloc[-len(holdout) :].tolist()
    # no training row's label (t+4h) lies in the holdout period
    assert (train["Timestamp"] + pd.Timedelta(hours=4)).max() < holdout["Timestamp"].min()
    assert len(train) == len(prepared) - len(holdout) - 4


def test_pipeline_takes_raw_columns_imputes_and_scores_unseen_rows():
    prepared = training.prepare(observations(600), DATASET)
    columns = training.model_columns(DATASET)
    assert "Future_weather_condition" not in columns
    for family in ("logistic_regression", "hist_gradient_boosting", "random_forest", "svm"):
        model = training.build_pipeline(family, DATASET, seed=0).fit(prepared[columns], prepared["rain_in_4h"])
        unseen = prepared[columns].head(3).copy()
        unseen.loc[:, "Pressure_millibars"] = np.nan  # ingest nulls impossible pressure
        proba = model.predict_proba(unseen)[:, 1]
        assert np.all((proba >= 0) & (proba <= 1)), family
        names = list(model.named_steps["preprocess"].get_feature_names_out())
        assert "calendar__hour_sin" in names and "calendar__month_cos" in names


def test_search_is_seeded_and_reproducible():
    prepared = training.prepare(observations(900), DATASET)
    train, _ = training.split(prepared, DATASET, 0.2)
    first = training.search("hist_gradient_boosting", train, DATASET, CFG, iterations=2)
    second = training.search("hist_gradient_boosting", train, DATASET, CFG, iterations=2)
    assert first.best_params_ == second.best_params_
    assert first.best_score_ == second.best_score_


def test_svm_is_skipped_above_the_configured_size():
    assert training.skip_reason("svm", CFG.model.svm_max_rows + 1, CFG).startswith("svm skipped")
    assert training.skip_reason("svm", CFG.model.svm_max_rows, CFG) is None
    assert training.skip_reason("hist_gradient_boosting", 10**7, CFG) is None


def test_settings_fall_back_to_the_configuration():
    settings = training.resolve_settings(
        {"training_window_days": None, "model_families": [], "force_promote": False}, CFG
    )
    assert settings == {
        "training_window_days": CFG.model.training_window_days,
        "model_families": list(CFG.model.families),
        "search_iterations": CFG.model.search_iterations,
        "force_promote": False,
    }
    assert training.resolve_settings({"search_iterations": 3}, CFG)["search_iterations"] == 3


def test_unknown_family_fails_without_retry():
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="gradient_descent"):
        training.resolve_settings({"model_families": ["gradient_descent"]}, CFG)


def test_trigger_info_carries_drift_check_conf():
    class Run:
        dag_id, run_id, run_type, triggering_user_name = "train", "r1", "manual", None

    info = training.trigger_info(
        {"reason": "drift", "drifted_features": ["Humidity"], "report_uri": "s3://b/r.html"}, Run()
    )
    assert (
        info["reason"] == "drift" and info["drifted_features"] == ["Humidity"] and info["report_uri"] == "s3://b/r.html"
    )
    Run.run_type = "scheduled"
    assert training.trigger_info({}, Run())["reason"] == "schedule"


def test_digest_changes_with_content_only():
    raw = observations(50)
    columns = list(DATASET.columns)
    assert training.frame_digest(raw, columns) == training.frame_digest(raw.copy(), columns)
    changed = raw.copy()
    changed.loc[10, "Humidity"] += 0.01
    assert training.frame_digest(changed, columns) != training.frame_digest(raw, columns)


def test_pickled_model_loads_without_the_project_on_the_path(tmp_path):
    """train pickles the calendar code by value: batch_score elsewhere needs only sklearn."""
    import cloudpickle

    from mlops import features

    prepared = training.prepare(observations(300), DATASET)
    columns = training.model_columns(DATASET)
    model = training.build_pipeline("logistic_regression", DATASET, 0).fit(prepared[columns], prepared["rain_in_4h"])
    cloudpickle.register_pickle_by_value(features)
    try:
        (tmp_path / "model.pkl").write_bytes(cloudpickle.dumps(model))
    finally:
        cloudpickle.unregister_pickle_by_value(features)
    prepared[columns].head(5).to_pickle(tmp_path / "rows.pkl")
    expected = model.predict_proba(prepared[columns].head(5))[:, 1]
    code = (
        "import pickle, sys, pandas as pd\n"
        "assert not any('plugins' in p for p in sys.path)\n"
        f"model = pickle.loads(open({str(tmp_path / 'model.pkl')!r}, 'rb').read())\n"
        f"print(list(model.predict_proba(pd.read_pickle({str(tmp_path / 'rows.pkl')!r}))[:, 1]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env={"PATH": ""})
    assert out.returncode == 0, out.stderr
    assert eval(out.stdout.strip().replace("np.float64", "")) == pytest.approx(list(expected))


def test_the_dataset_source_stays_small_for_any_number_of_batches():
    import hashlib
    import json as _json

    from mlops.training.pipeline import batch_summary

    ids = [f"weather-{i:06d}" for i in range(20000)]
    summary = batch_summary(list(reversed(ids)))
    assert summary["batch_count"] == 20000
    assert (summary["first_batch"], summary["last_batch"]) == ("weather-000000", "weather-019999")
    assert summary["batch_ids_sha256"] == hashlib.sha256("\n".join(ids).encode()).hexdigest()
    assert len(_json.dumps(summary)) < 1000  # MLflow caps a dataset source at 65,535 characters


def test_svm_search_is_calibrated_without_the_deprecated_probability_option():
    import warnings

    prepared = training.prepare(observations(600), DATASET)
    train, _ = training.split(prepared, DATASET, 0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        searcher = training.search("svm", train, DATASET, CFG, iterations=2)
    from sklearn.calibration import CalibratedClassifierCV

    assert isinstance(searcher.best_estimator_.named_steps["model"], CalibratedClassifierCV)
    assert set(searcher.best_params_) == {"model__estimator__C", "model__estimator__gamma"}


def test_reference_profile_covers_the_holdout_season_too():
    # A window ending in December: the holdout is most of December. With training rows only,
    # the reference's December was a few hours, and drift_check compared December with autumn.
    prepared = training.prepare(observations(24 * 122, start="2015-09-01 00:00:00"), DATASET)
    train, holdout = training.split(prepared, DATASET, 0.25)
    model = training.build_pipeline("logistic_regression", DATASET, seed=0)
    model.fit(train[training.model_columns(DATASET)], train["rain_in_4h"])
    profile = training.reference_profile(model, train, holdout, DATASET)
    december = int((pd.concat([train, holdout])["Timestamp"].dt.month == 12).sum())
    assert december > 24 * 30 > int((train["Timestamp"].dt.month == 12).sum())
    assert profile["strata"]["rows"]["12"] == december
    assert profile["n_rows"] == sum(profile["scores"]["bin_counts"]) == len(train) + len(holdout)
    assert profile["calibration"]["n"] == len(holdout)
    assert profile["features"]["Temperature_C"]["autocorrelation"]["frequency"] == DATASET.frequency
