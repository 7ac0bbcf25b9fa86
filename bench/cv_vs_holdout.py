"""Measurement: why the cross-validated ROC AUC of train's candidates (~0.67) is far below
their holdout ROC AUC (0.90-0.99). Per TimeSeriesSplit validation fold and for the holdout:
its period, rows, share of positive labels, and the ROC AUC of logistic regression (train's
Pipeline, default parameters, fitted on everything before the fold) and of persistence.

    .venv/bin/python bench/cv_vs_holdout.py [--days 365]

Reads the example data (include/data/port_of_turku_weather.csv.gz) the way ingest stores it
and splits the last `--days` days exactly as train does (mlops.training.pipeline.prepare / split,
model.holdout_fraction, TimeSeriesSplit(model.cv_splits, gap = the label horizon)). No services.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins")]

from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.model_selection import TimeSeriesSplit  # noqa: E402

from mlops.config import load_config  # noqa: E402
from mlops.training.metrics import persistence_proba  # noqa: E402
from mlops.training.pipeline import build_pipeline, model_columns, prepare, split  # noqa: E402

DATA = ROOT / "include" / "data" / "port_of_turku_weather.csv.gz"


def _window(days: int, time_column: str) -> pd.DataFrame:
    raw = pd.read_csv(DATA).drop_duplicates(time_column, keep="first")
    raw.loc[raw["Pressure_millibars"] == 0, "Pressure_millibars"] = np.nan
    raw[time_column] = pd.to_datetime(raw[time_column]).dt.strftime("%Y-%m-%d %H:%M:%S")
    end = pd.Timestamp(raw[time_column].max())
    return raw[raw[time_column] >= (end - pd.Timedelta(days=days)).strftime("%Y-%m-%d %H:%M:%S")]


def _row(name: str, fit, part, dataset) -> str:
    y = part[dataset.label.name]
    model = build_pipeline("logistic_regression", dataset, 0).fit(fit[model_columns(dataset)], fit[dataset.label.name])
    both = y.nunique() == 2
    lr = roc_auc_score(y, model.predict_proba(part[model_columns(dataset)])[:, 1]) if both else float("nan")
    pers = roc_auc_score(y, persistence_proba(part, dataset)) if both else float("nan")
    t = part[dataset.time_column]
    return f"{name:9} {t.min():%Y-%m-%d}..{t.max():%Y-%m-%d} {len(part):6d} {y.mean():9.1%} {lr:8.3f} {pers:12.3f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=365)
    days = parser.parse_args().days
    cfg = load_config(environ={})
    dataset = cfg.dataset
    training, holdout = split(prepare(_window(days, dataset.time_column), dataset), dataset, cfg.model.holdout_fraction)
    print(f"{'part':9} {'period':22} {'rows':>6} {'positive':>9} {'LR AUC':>8} {'persist. AUC':>12}")
    folds = TimeSeriesSplit(n_splits=cfg.model.cv_splits, gap=dataset.label.steps_ahead)
    for i, (fit_idx, val_idx) in enumerate(folds.split(training)):
        print(_row(f"fold {i + 1}", training.iloc[fit_idx], training.iloc[val_idx], dataset))
    print(_row("holdout", training, holdout, dataset))


if __name__ == "__main__":
    main()
