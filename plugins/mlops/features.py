"""Calendar features derived from the time column, inside the model pipeline.

Kept in a module of its own, importing only numpy and pandas: train pickles it by value
into the logged model, so a registered model loads without this project on the path.
Hours, weekdays and months are cyclic, so each becomes a (sin, cos) pair: 23h is close to 0h.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PERIODS = {"hour": 24, "dayofweek": 7, "month": 12}


def calendar_features(frame, features=("hour", "month")):
    """(sin, cos) of each calendar feature of the single time column of frame."""
    column = frame.iloc[:, 0] if isinstance(frame, pd.DataFrame) else pd.Series(np.asarray(frame).ravel())
    times = pd.to_datetime(column)
    out = []
    for name in features:
        value = getattr(times.dt, name).to_numpy(dtype=float)
        if name == "month":
            value = value - 1
        angle = 2 * np.pi * value / PERIODS[name]
        out.extend([np.sin(angle), np.cos(angle)])
    return np.column_stack(out) if out else np.empty((len(times), 0))


def calendar_feature_names(transformer, input_features=None):
    """Output names for FunctionTransformer(feature_names_out=...)."""
    features = (transformer.kw_args or {}).get("features", ())
    return np.asarray([f"{name}_{part}" for name in features for part in ("sin", "cos")], dtype=object)
