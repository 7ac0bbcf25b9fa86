"""warehouse.bulk_insert on a real PostgreSQL database: the COPY path (CSV written by pyarrow)
stores exactly the rows it is given, the values that break COPY's text format included, and
skips conflicts as row-by-row INSERT ... ON CONFLICT DO NOTHING does (the same checks as
tests/unit/test_bulk_insert.py on SQLite). Only PostgreSQL's server is started, not the stack."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from unit import test_bulk_insert as bulk

import stack as stack_module
from example_warehouse import WAREHOUSE_CONN_ENV
from mlops.io import warehouse

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


# ---------------------------------------------------------------- the binary COPY encoder

TYPED = "bulk_typed"
TYPED_DDL = (
    "CREATE TABLE IF NOT EXISTS {name} (id BIGINT PRIMARY KEY, i2 SMALLINT, i4 INTEGER, i8 BIGINT,"
    " f4 REAL, f8 DOUBLE PRECISION, b BOOLEAN, v VARCHAR(200), t TEXT)"
)
TYPED_ARROW = {"i2": "int64", "i4": "int64", "i8": "int64", "f4": "float32", "f8": "float64", "b": "bool_"}
typed_rows = st.lists(
    st.tuples(
        st.one_of(st.none(), st.integers(-(2**15), 2**15 - 1)),
        st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)),
        bulk.ints,
        st.one_of(st.none(), st.floats(width=32, allow_nan=True, allow_infinity=True)),
        bulk.floats,
        st.one_of(st.none(), st.booleans()),
        st.one_of(
            st.none(), st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=50)
        ),
        bulk.texts,
    ),
    max_size=40,
)


def _typed_table(rows: list[tuple]):
    import pyarrow as pa

    names = ["i2", "i4", "i8", "f4", "f8", "b", "v", "t"]
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(names)
    arrays = {"id": pa.array(range(len(rows)), pa.int64())}
    for name, values in zip(names, columns, strict=True):
        arrays[name] = pa.array(values, getattr(pa, TYPED_ARROW.get(name, "string"))())
    return pa.table(arrays)


def _stored(conn, table: str) -> list[tuple]:
    return [tuple(row) for row in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY id"))]


def _same_rows(got: list[tuple], want: list[tuple]) -> bool:
    def key(value):
        return "NaN" if isinstance(value, float) and math.isnan(value) else value

    return [tuple(map(key, row)) for row in got] == [tuple(map(key, row)) for row in want]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=typed_rows)
def test_binary_copy_stores_what_row_by_row_inserts_store(postgres_warehouse, rows):
    """bulk_insert (binary COPY for these column types) and psycopg's own row-by-row INSERT of
    the same values leave equal tables: every integer width, float4/float8 with NaN and
    infinities, booleans, varchar and text of any length, NULLs anywhere."""
    from mlops.io import pg_binary

    table = _typed_table(rows)
    with warehouse.engine().begin() as conn:
        for name in (TYPED, f"{TYPED}_reference"):
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
            conn.execute(sa.text(TYPED_DDL.format(name=name)))
        cursor = conn.connection.driver_connection.cursor()
        pg_binary.check_encodable(table, pg_binary.column_type_oids(cursor, TYPED))  # the binary path
        assert warehouse.bulk_insert(conn, TYPED, table) == len(rows)
        values = ", ".join(["%s"] * table.num_columns)
        cursor.executemany(
            f"INSERT INTO {TYPED}_reference VALUES ({values})", [tuple(r.values()) for r in table.to_pylist()]
        )
        assert _same_rows(_stored(conn, TYPED), _stored(conn, f"{TYPED}_reference"))


def test_values_binary_cannot_carry_go_as_text_and_the_server_decides(postgres_warehouse):
    """An integer too wide for its column and a float32 into a float8 column are not written in
    binary: the text COPY stores the float32's digits, and the server refuses the integer
    (nothing of that COPY stored). A NULL whose Arrow slot holds bytes stays NULL."""
    import pyarrow as pa
    from psycopg import errors

    offsets = pa.py_buffer(b"".join(n.to_bytes(4, "little") for n in (0, 2, 5, 6)))
    # Rows "ab", NULL holding the bytes "cde", "f" (validity bits 1, 0, 1).
    texts = pa.StringArray.from_buffers(3, offsets, pa.py_buffer(b"abcdef"), pa.py_buffer(bytes([0b101])))
    with warehouse.engine().begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {TYPED}"))
        conn.execute(sa.text(TYPED_DDL.format(name=TYPED)))
        warehouse.bulk_insert(conn, TYPED, pa.table({"id": pa.array([1, 2, 3]), "t": texts}))  # binary
        float32 = pa.table({"id": pa.array([4, 5]), "f8": pa.array([0.1, None], pa.float32())})
        warehouse.bulk_insert(conn, TYPED, float32)  # text
        stored = conn.execute(sa.text(f"SELECT id, f8, t FROM {TYPED} ORDER BY id")).all()
        assert [tuple(row) for row in stored] == [
            (1, None, "ab"),
            (2, None, None),
            (3, None, "f"),
            (4, 0.1, None),
            (5, None, None),
        ]
    too_wide = pa.table({"id": pa.array([6]), "i4": pa.array([2**31])})
    with pytest.raises(errors.NumericValueOutOfRange), warehouse.engine().begin() as conn:
        warehouse.bulk_insert(conn, TYPED, too_wide)  # binary would fail as InvalidBinaryRepresentation
    with warehouse.engine().connect() as conn:
        assert conn.execute(sa.text(f"SELECT count(*) FROM {TYPED}")).scalar_one() == 5
