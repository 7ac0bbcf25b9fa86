"""The configuration file loads, validates and takes environment overrides."""

from pathlib import Path

import pytest
import yaml

from mlops.config import DEFAULT_CONFIG_PATH, ConfigError, load_config


def _write(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    mutate(raw)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_shipped_config_is_valid():
    cfg = load_config(environ={})
    assert cfg.dataset.label.steps_ahead == 4
    assert cfg.dataset.label.source_column == "Current_weather_condition"
    assert "Future_weather_condition" not in cfg.dataset.features


def test_env_override_is_parsed_and_validated():
    cfg = load_config(environ={"MLOPS__PROMOTION__MIN_IMPROVEMENT": "0.02", "MLOPS__DATASET__LABEL__STEPS_AHEAD": "6"})
    assert cfg.promotion.min_improvement == 0.02
    assert cfg.dataset.label.steps_ahead == 6


def test_bad_override_names_the_key():
    with pytest.raises(ConfigError, match=r"promotion\.min_improvement"):
        load_config(environ={"MLOPS__PROMOTION__MIN_IMPROVEMENT": "a lot"})


def test_unknown_override_section_names_the_variable():
    with pytest.raises(ConfigError, match="MLOPS__NOPE__X"):
        load_config(environ={"MLOPS__NOPE__X": "1"})


def test_unknown_key_is_rejected(tmp_path):
    path = _write(tmp_path, lambda raw: raw["drift"].update(psi_treshold=0.3))
    with pytest.raises(ConfigError, match=r"drift\.psi_treshold"):
        load_config(path, environ={})


def test_feature_must_be_a_known_column(tmp_path):
    path = _write(tmp_path, lambda raw: raw["dataset"]["features"].append("Dew_point"))
    with pytest.raises(ConfigError, match="Dew_point"):
        load_config(path, environ={})


def test_ignored_column_cannot_be_a_feature(tmp_path):
    path = _write(tmp_path, lambda raw: raw["dataset"]["features"].append("Future_weather_condition"))
    with pytest.raises(ConfigError, match="ignored_columns"):
        load_config(path, environ={})
