"""warehouse.bulk_insert on a real PostgreSQL database: the COPY path (CSV written by pyarrow)
stores exactly the rows it is given, the values that break COPY's text format included, and
skips conflicts as row-by-row INSERT ... ON CONFLICT DO NOTHING does (the same checks as
tests/unit/test_bulk_insert.py on SQLite). Only PostgreSQL's server is started, not the stack."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from unit import test_bulk_insert as bulk

import stack as stack_module
from example_warehouse import WAREHOUSE_CONN_ENV

pytestmark = [pytest.mark.integration, pytest.mark.warehouses("postgres")]


@pytest.fixture(scope="module")
def postgres_warehouse(postgres_server):
    """A fresh PostgreSQL database as the warehouse connection of this module."""
    stack_module.create_pg_database(postgres_server, "bulk_insert", fresh=True)
    connection = dataclasses.replace(postgres_server, warehouse="postgres").warehouse_connection()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(WAREHOUSE_CONN_ENV, json.dumps({**connection, "schema": "bulk_insert"}))
        yield


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=bulk.row_values)
@example(values=bulk.EVERY_TRICKY_VALUE)
def test_rows_read_back_equal_through_copy(postgres_warehouse, values):
    bulk.check_round_trip(values)


def test_first_row_of_a_key_wins_and_stored_rows_stay_through_copy(postgres_warehouse):
    bulk.check_first_row_wins()
