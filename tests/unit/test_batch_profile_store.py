"""Batch profiles in the warehouse: stored after the real load path, merged over a window,
re-made when a later batch replaced rows, and the same after a retry (SQLite file, no services)."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from mlops.config import PROJECT_ROOT, get_config
from mlops.ingest import pipeline as ingest
from mlops.io import warehouse
from mlops.monitoring import batch_profile


@pytest.fixture()
def replace_warehouse(tmp_path):
    """A SQLite warehouse of this test's own, with ingest.on_conflict: replace."""
    name = f"AIRFLOW_CONN_{get_config().connections.warehouse.upper()}"
    saved = {key: os.environ.get(key) for key in (name, "MLOPS__INGEST__ON_CONFLICT")}
    os.environ[name] = json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "warehouse.db")})
    os.environ["MLOPS__INGEST__ON_CONFLICT"] = "replace"
    get_config.cache_clear()
    warehouse.ensure_schema()
    yield tmp_path
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    get_config.cache_clear()


def load(rows: pd.DataFrame, workdir, batch_id: str) -> None:
    """Validate and load rows as one batch, the way ingest_files does."""
    source, staged = workdir / f"{batch_id}.csv", workdir / f"{batch_id}.parquet"
    rows.to_csv(source, index=False)
    result = ingest.validate_file(source, staged, f"landing/{batch_id}.csv")
    assert result["status"] == "passed", result
    with ingest.shared_connections():
        ingest.load_batch(
            staged,
            {"batch_id": batch_id, "object_key": f"landing/{batch_id}.csv", "checksum": batch_id, "status": "loaded"},
        )


def stored_profiles() -> dict[str, str]:
    with warehouse.engine().connect() as conn:
        return dict(conn.execute(sa.text("SELECT batch_id, profile FROM batch_profiles")).all())


def test_stored_profiles_merge_to_the_profile_of_the_rows_held_even_after_a_replace(replace_warehouse):
    dataset = get_config().dataset
    example = pd.read_csv(PROJECT_ROOT / dataset.example_file, dtype=str, keep_default_na=False).iloc[:2000]
    first, second = example.iloc[:1000].copy(), example.iloc[900:].copy()
    # The second batch corrects 100 stored rows (on_conflict replace): they move to it.
    second.loc[second.index < 1000, "Temperature_C"] = (
        pd.to_numeric(second.loc[second.index < 1000, "Temperature_C"]) + 1
    ).astype(str)
    load(first, replace_warehouse, "a")
    assert [p["batch_id"] for p in batch_profile.profile_pending(dataset)] == ["a"]
    load(second, replace_warehouse, "b")
    # b has no profile, a's is stale (100 of its rows were replaced after it was made).
    assert {p["batch_id"]: p["rows"] for p in batch_profile.profile_pending(dataset)} == {"a": 900, "b": 1100}
    assert batch_profile.profile_pending(dataset) == []
    merged, batches = batch_profile.window_profile("1900-01-01", "2999-12-31")
    held = pd.concat([batch_profile.read_batch_rows(b, dataset) for b in ("a", "b")])
    assert batches == 2 and len(held) == 2000
    got, want = (batch_profile.window_totals(p) for p in (merged, batch_profile.batch_profile(held, dataset)))
    assert got["rows"] == want["rows"] and got["months"] == want["months"]
    for name, feature in want["features"].items():
        for key, value in feature.items():
            # Sums are added in another order: equal to rounding.
            assert np.asarray(got["features"][name][key]).tolist() == pytest.approx(np.asarray(value).tolist()), name


def test_a_retry_stores_the_same_profile(replace_warehouse):
    dataset = get_config().dataset
    example = pd.read_csv(PROJECT_ROOT / dataset.example_file, dtype=str, keep_default_na=False).iloc[:300]
    load(example, replace_warehouse, "a")
    batch_profile.store_profile("a", dataset)
    before = stored_profiles()
    batch_profile.store_profile("a", dataset)  # a retry after a crash past the commit
    assert stored_profiles() == before and json.loads(before["a"])["days"]


def test_drift_check_reads_rows_when_the_profiles_do_not_hold_every_row_of_the_window(replace_warehouse):
    from mlops.monitoring import check as monitoring

    config = get_config()
    dataset = config.dataset
    example = pd.read_csv(PROJECT_ROOT / dataset.example_file, dtype=str, keep_default_na=False).iloc[:1500]
    load(example, replace_warehouse, "a")
    start, end = monitoring.window_bounds(30)
    # ingest's profile_batches has not run yet: drift_check does not profile, it reads the rows.
    current, merged, source = monitoring.window_data(config, start, end)
    assert source["kind"] == "rows" and merged is None and set(dataset.features) <= set(current)
    assert source["notes"] == [
        "1 loaded batch(es) without a current profile (a; ingest's profile_batches stores them): "
        "the window's rows were read"
    ]
    batch_profile.profile_pending(dataset)  # what profile_batches does after the load
    current, merged, source = monitoring.window_data(config, start, end)
    assert source["kind"] == "batch profiles" and merged is not None
    assert list(current) == [dataset.time_column, dataset.label.source_column]  # the label's only
    # A row stored some other way (no batch, no profile): the profiles no longer describe the window.
    with warehouse.engine().begin() as conn:
        conn.execute(
            sa.text(f'INSERT INTO observations ("{dataset.time_column}", batch_id, loaded_at) VALUES (:t, :b, :t)'),
            {"t": end[:10] + " 00:30:00", "b": "elsewhere"},
        )
    current, merged, source = monitoring.window_data(config, start, end)
    assert source["kind"] == "rows" and merged is None and set(dataset.features) <= set(current)
    assert "the window's rows were read" in source["notes"][0]
