"""propose reuses a version's holdout predictions from the object store (real SeaweedFS)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mlops.config import get_config
from mlops.training import promotion

pytestmark = [pytest.mark.integration, pytest.mark.warehouses("postgres")]


def _holdout(n=300, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n)})
    frame["label"] = (frame["x1"] + rng.normal(scale=0.5, size=n) > 0).astype(int)
    return frame


def test_the_same_version_on_the_same_rows_is_predicted_once(stack):
    from mlops.io.connections import s3_client

    holdout = _holdout()
    model = LogisticRegression().fit(holdout[["x1", "x2"]], holdout["label"])
    loads = []

    def load(name, version):
        loads.append(version)
        return model

    def must_not_load(name, version):
        raise AssertionError("the cached predictions should have been reused")

    key = promotion.holdout_cache_key("cache_test_model", "7", holdout)
    bucket = get_config().storage.bucket
    s3_client().delete_object(Bucket=bucket, Key=key)
    try:
        first = promotion.holdout_probabilities("cache_test_model", "7", holdout, load=load)
        np.testing.assert_array_equal(first, model.predict_proba(holdout[["x1", "x2"]])[:, 1])
        again = promotion.holdout_probabilities("cache_test_model", "7", holdout, load=must_not_load)
        np.testing.assert_array_equal(again, first)
        # Another version, or the same version on other rows, is predicted afresh.
        promotion.holdout_probabilities("cache_test_model", "8", holdout, load=load)
        changed = holdout.copy()
        changed.loc[0, "x1"] += 1
        promotion.holdout_probabilities("cache_test_model", "7", changed, load=load)
        assert loads == ["7", "8", "7"]
    finally:
        listing = s3_client().list_objects_v2(
            Bucket=bucket, Prefix=f"{promotion.HOLDOUT_CACHE_PREFIX}cache_test_model/"
        )
        for obj in listing.get("Contents", []):
            s3_client().delete_object(Bucket=bucket, Key=obj["Key"])
