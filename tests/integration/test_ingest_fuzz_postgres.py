"""The ingest fuzz (tests/unit/test_ingest_fuzz.py) on a real PostgreSQL warehouse: the same
mutated files and invariants, fewer examples (each load is a round trip to the server), so the
whole fuzz stays well under two minutes. Only PostgreSQL's server is started, not the stack.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from unit import test_ingest_fuzz as fuzz

import stack as stack_module
from mlops.ingest import pipeline as ingest

pytestmark = [pytest.mark.integration, pytest.mark.warehouses("postgres")]


@pytest.fixture(scope="module")
def postgres_warehouse(postgres_server):
    """A fresh PostgreSQL database as the warehouse, and the fuzz's lenient row policy."""
    settings = postgres_server  # the session's TEST_SETTINGS (a `from conftest import` may find tests/docker's)
    stack_module.create_pg_database(settings, "ingest_fuzz", fresh=True)
    connection = dataclasses.replace(settings, warehouse="postgres").warehouse_connection()
    with fuzz.fuzz_warehouse({**connection, "schema": "ingest_fuzz"}):
        yield


@fuzz.FUZZ_SETTINGS(max_examples=25)
@given(mutations=fuzz.st.lists(fuzz.mutation, max_size=6), options=fuzz.file_level)
def test_mutated_files_never_crash_shift_or_lose_rows_on_postgres(postgres_warehouse, tmp_path, mutations, options):
    data = fuzz._build(mutations, options)
    fuzz.check_invariants(data, tmp_path, ingest.batch_id_of_content("landing/fuzz.csv", data))
