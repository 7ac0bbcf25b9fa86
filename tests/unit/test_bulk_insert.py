"""warehouse.bulk_insert stores exactly the rows it is given, on a real SQLite file (here) and a
real PostgreSQL database (tests/integration/test_bulk_insert_postgres.py, the COPY path).

Property: any rows of text, float and bigint values, with the values that break hand-made
COPY text (NULLs, empty strings, quotes, tabs, CR/LF, backslashes, `\\.` and `\\N`, unicode,
infinities, NaN, subnormal and extreme floats, the int64 limits) read back equal, in order.
With a conflict key the first row of each key wins and stored rows stay, as row-by-row
`INSERT ... ON CONFLICT DO NOTHING` does.
"""

from __future__ import annotations

import json
import math

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from example_warehouse import WAREHOUSE_CONN_ENV
from mlops.io import warehouse

TABLE = "bulk_probe"
DDL = f"CREATE TABLE IF NOT EXISTS {TABLE} (id BIGINT PRIMARY KEY, s TEXT, f DOUBLE PRECISION, i BIGINT)"
TRICKY = ["", "\\.", "\\N", "\\", '"', '""', "a,b", "tab\there", "cr\rlf\n", "\n\\.\n", "NULL", " ", "ü€😀", "'"]
# PostgreSQL's text type cannot hold NUL, and lone surrogates are not UTF-8 (no database stores them): left out.
texts = st.one_of(
    st.none(), st.sampled_from(TRICKY), st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)))
)
floats = st.one_of(
    st.none(),
    st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 0.1, 1 / 3]),
    st.floats(allow_nan=True, allow_infinity=True),
)
ints = st.one_of(st.none(), st.sampled_from([0, -(2**63), 2**63 - 1]), st.integers(-(2**63), 2**63 - 1))
row_values = st.lists(st.tuples(texts, floats, ints), max_size=40)


# Every tricky value at least once, whatever Hypothesis draws besides.
EVERY_TRICKY_VALUE = [
    (text, number, integer)
    for text, number, integer in zip(
        [*TRICKY, None, None, None],
        [0.0, -0.0, 5e-324, -5e-324, 1.7976931348623157e308, math.inf, -math.inf, math.nan, None, 0.1, 1 / 3] * 2,
        [0, -(2**63), 2**63 - 1, None] * 5,
        strict=False,
    )
]


def _same(got, want, nan_is_null: bool) -> bool:
    if isinstance(want, float) and math.isnan(want):
        return got is None if nan_is_null else isinstance(got, float) and math.isnan(got)
    return got == want


def _table(ids: list[int], values: list[tuple]):
    import pyarrow as pa

    s, f, i = zip(*values, strict=True) if values else ((), (), ())
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "s": pa.array(s, pa.string()),
            "f": pa.array(f, pa.float64()),
            "i": pa.array(i, pa.int64()),
        }
    )


def check_round_trip(values: list[tuple], nan_is_null: bool = False) -> None:
    """bulk_insert `values` (no key conflicts) into the probe table; they read back equal
    (nan_is_null: SQLite stores NaN as NULL, whoever binds it)."""
    with warehouse.engine().begin() as conn:
        conn.execute(sa.text(DDL))
        conn.execute(sa.text(f"DELETE FROM {TABLE}"))
        inserted = warehouse.bulk_insert(conn, TABLE, _table(list(range(len(values))), values))
    with warehouse.engine().connect() as conn:
        stored = [tuple(r[1:]) for r in conn.execute(sa.text(f"SELECT id, s, f, i FROM {TABLE} ORDER BY id"))]
    assert inserted == len(values) == len(stored)
    for got, want in zip(stored, values, strict=True):
        assert all(_same(g, w, nan_is_null) for g, w in zip(got, want, strict=True)), (got, want)


def check_first_row_wins() -> None:
    """With a conflict key: a stored key stays, a key repeated in the input keeps its first row."""
    with warehouse.engine().begin() as conn:
        conn.execute(sa.text(DDL))
        conn.execute(sa.text(f"DELETE FROM {TABLE}"))
        conn.execute(sa.text(f"INSERT INTO {TABLE} (id, s) VALUES (1, 'stored')"))
    rows = _table(
        [1, 2, 3, 2, 4],
        [("new", None, None), ("first", 1.0, 1), ("x", None, None), ("second", 2.0, 2), ("y", None, None)],
    )
    with warehouse.engine().begin() as conn:
        fresh = warehouse.bulk_insert(conn, TABLE, _table([5, 6], [("a", None, None), ("b", None, None)]), "id")
        inserted = warehouse.bulk_insert(conn, TABLE, rows, conflict_key="id")
        again = warehouse.bulk_insert(conn, TABLE, rows, conflict_key="id")  # same transaction, all stored
    with warehouse.engine().connect() as conn:
        stored = dict(conn.execute(sa.text(f"SELECT id, s FROM {TABLE}")).all())
    assert stored == {1: "stored", 2: "first", 3: "x", 4: "y", 5: "a", 6: "b"}
    assert (fresh, inserted, again) == (2, 3, 0)


@pytest.fixture()
def sqlite_warehouse(tmp_path, monkeypatch):
    monkeypatch.setenv(WAREHOUSE_CONN_ENV, json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "w.db")}))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=row_values)
@example(values=EVERY_TRICKY_VALUE)
def test_rows_read_back_equal_on_sqlite(sqlite_warehouse, values):
    check_round_trip(values, nan_is_null=True)


def test_first_row_of_a_key_wins_and_stored_rows_stay_on_sqlite(sqlite_warehouse):
    check_first_row_wins()


@pytest.mark.parametrize("n", [2, 499, 500, 501, 1234])
def test_columns_of_one_value_read_back_on_every_row_across_statements_on_sqlite(sqlite_warehouse, n):
    """SQLite binds a column of one value once per multi-row statement: every row still gets it,
    at and across statement boundaries, and a conflict key still keeps the first row."""
    values = [("batch-7", 0.25, i % 3) for i in range(n)]
    check_round_trip(values)
    with warehouse.engine().begin() as conn:
        again = warehouse.bulk_insert(conn, TABLE, _table(list(range(n - 1, n + 1)), values[:2]), conflict_key="id")
    with warehouse.engine().connect() as conn:
        last = conn.execute(sa.text(f"SELECT s, f, i FROM {TABLE} WHERE id = {n}")).one()
    assert again == 1 and tuple(last) == values[1]
