"""The warehouse schema is created through the Airflow connection, on each configured warehouse
(a real SQLite file; a real PostgreSQL database with MLOPS_TEST_WAREHOUSE=sqlite,postgres)."""

import pytest
import sqlalchemy as sa

from mlops.io import warehouse

pytestmark = pytest.mark.integration


def test_schema_has_configured_observation_columns(stack):
    warehouse.ensure_schema()
    columns = {c["name"] for c in sa.inspect(warehouse.engine()).get_columns("observations")}
    assert {"Timestamp", "Temperature_C", "Pressure_millibars", "batch_id", "loaded_at"} <= columns
    tables = set(sa.inspect(warehouse.engine()).get_table_names())
    assert {"batches", "observations", "predictions"} <= tables


def test_warehouse_connection_reaches_the_parametrized_database(stack):
    expected = {"sqlite": "sqlite", "postgres": "postgresql"}[stack.warehouse]
    assert warehouse.engine().dialect.name == expected
