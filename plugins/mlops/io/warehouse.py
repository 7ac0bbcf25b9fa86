"""The SQL warehouse: SQL files under include/sql/, run through the warehouse connection.

SQL files are Jinja templates rendered with the data set configuration (column names and
types), so the SQL stays in include/sql/ and stays portable between SQLite and PostgreSQL.
Identifiers of data set columns are always double-quoted, keeping their configured case.
"""

from __future__ import annotations

import contextlib
import functools
import re
from pathlib import Path

from mlops.config import PROJECT_ROOT, get_config

SQL_DIR = PROJECT_ROOT / "include" / "sql"
SQL_TYPES = {"datetime": "TEXT", "float": "DOUBLE PRECISION", "int": "BIGINT", "string": "TEXT"}
# How timestamps are written to the warehouse (UTC, ISO-8601, sortable as text).
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


def now_text() -> str:
    """The current UTC time as warehouse text (TIMESTAMP_FORMAT), e.g. '2026-01-31 12:00:00'."""
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime(TIMESTAMP_FORMAT)


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _template_context() -> dict:
    dataset = get_config().dataset
    columns = [
        {"name": name, "quoted": quote(name), "sql_type": SQL_TYPES[spec.type]}
        for name, spec in dataset.columns.items()
    ]
    return {"columns": columns, "time_column": dataset.time_column, "quote": quote, "in_batch_span": in_batch_span}


def in_batch_span(batch_id: str, rows: str = "", span: str | None = None) -> str:
    """SQL condition: an observation carries `batch_id` (an SQL expression: a parameter or a
    column) and lies in that batch's recorded time span (batches.first_time/last_time, from the
    batches row aliased `span`, or looked up by scalar subqueries when None).

    observations has no index on batch_id (keeping one per row cost the load ~40% of the
    server's work): a batch's rows are a range of the time column's primary key, filtered by
    batch_id. A batch without a recorded span (rows written by hand) is searched in the whole
    table. `rows` prefixes the observation columns (e.g. "o.")."""
    time = rows + quote(get_config().dataset.time_column)
    if span is None:
        first = f"(SELECT first_time FROM batches WHERE batch_id = {batch_id})"
        last = f"(SELECT last_time FROM batches WHERE batch_id = {batch_id})"
    else:
        first, last = f"{span}.first_time", f"{span}.last_time"
    # '' and '~' bound every time text ('YYYY-MM-DD HH:MM:SS' sorts between them).
    return f"{rows}batch_id = {batch_id} AND {time} >= COALESCE({first}, '') AND {time} <= COALESCE({last}, '~')"


def render_sql(name: str, **context) -> str:
    """Render include/sql/<name> with the configuration's columns (and any extra context)."""
    return _template(name).render(**_template_context(), **context)


@functools.lru_cache(maxsize=256)
def _template(name: str):
    """include/sql/<name> parsed once per process (a task scoring many small batches renders the
    same queries for each; parsing cost more than running them)."""
    import jinja2

    return jinja2.Template(Path(SQL_DIR / name).read_text(), undefined=jinja2.StrictUndefined)


def split_statements(sql: str) -> list[str]:
    """Split a script on semicolons at line ends (our SQL files keep one statement per block)."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [stmt.strip() for stmt in "\n".join(lines).split(";") if stmt.strip()]


def bulk_insert(conn, table: str, rows, conflict_key: str | None = None) -> int:
    """Append `rows` to `table` in one bulk operation; the number of rows inserted.

    rows: a pyarrow Table or RecordBatch whose field names are columns of `table` (strings,
    floats, integers; nulls as nulls). conn: an open SQLAlchemy connection, inside the caller's
    transaction (nothing is committed here). conflict_key: a column with a unique index; a row
    whose key is stored already (or repeats an earlier row of `rows`) is skipped, as
    `INSERT ... ON CONFLICT (key) DO NOTHING` row by row in the given order would.

    PostgreSQL: COPY FROM STDIN in CSV format, the rows written by pyarrow's CSV writer (every
    string quoted, so an unquoted empty field is NULL and a quoted one is ''; floats in their
    shortest round-trip form); with conflict_key, rows that meet a conflict go through a
    temporary table (see _copy_insert). SQLite (no COPY): multi-row VALUES statements, a column
    holding one value bound once per statement (see _sqlite_insert).
    """
    if rows.num_rows == 0:
        return 0
    if conn.dialect.name == "postgresql":
        return _copy_insert(conn.connection.driver_connection, table, rows, conflict_key)
    return _sqlite_insert(conn.connection.driver_connection, table, rows, conflict_key)


SQLITE_ROWS_PER_STATEMENT = 500  # rows of one multi-row VALUES statement


def _sqlite_insert(dbapi, table: str, rows, conflict_key: str | None) -> int:
    """bulk_insert on SQLite (sqlite3): INSERT ... VALUES (...), (...), ... of up to
    SQLITE_ROWS_PER_STATEMENT rows each, in the given order. A column holding one value in every
    row (the batch, model, role, scored_at of a chunk of predictions) is one numbered parameter
    (?1, ?2, ...) that every row of the statement names, so it is bound once per statement, not
    once per row; measured faster than executemany, which binds and steps every row on its own
    (bench/scoring.py, 1M rows: see README)."""
    import sqlite3

    constant = [i for i, column in enumerate(rows.columns) if _is_constant(column)]
    varying = [i for i in range(rows.num_columns) if i not in constant]
    limit = dbapi.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) - len(constant)
    per_statement = max(1, min(SQLITE_ROWS_PER_STATEMENT, limit // max(len(varying), 1)))
    head = [rows.column(i)[0].as_py() for i in constant]
    values = [None] * (rows.num_rows * len(varying))
    for offset, i in enumerate(varying):
        values[offset :: len(varying)] = rows.column(i).to_pylist()
    names, width, inserted = tuple(rows.schema.names), len(varying), 0
    with contextlib.closing(dbapi.cursor()) as cursor:
        for start in range(0, rows.num_rows, per_statement):
            count = min(per_statement, rows.num_rows - start)
            sql = _sqlite_values_sql(table, names, tuple(constant), count, conflict_key)
            cursor.execute(sql, head + values[start * width : (start + count) * width])
            inserted += cursor.rowcount
    return inserted


@functools.lru_cache(maxsize=64)
def _sqlite_values_sql(table: str, names: tuple, constant: tuple, count: int, conflict_key: str | None) -> str:
    """INSERT INTO table (names) VALUES of `count` rows: the constant columns (indexes into names)
    are ?1 .. ?k in every row, the others numbered on from k + 1, row after row."""
    marks, number = [], len(constant)
    for _ in range(count):
        row = []
        for i in range(len(names)):
            if i in constant:
                row.append(f"?{constant.index(i) + 1}")
            else:
                number += 1
                row.append(f"?{number}")
        marks.append(f"({', '.join(row)})")
    sql = f"INSERT INTO {quote(table)} ({', '.join(quote(n) for n in names)}) VALUES {', '.join(marks)}"
    return sql + (f" ON CONFLICT ({quote(conflict_key)}) DO NOTHING" if conflict_key else "")


def _is_constant(column) -> bool:
    """True if the column holds one non-null value in every one of its (at least two) rows."""
    import pyarrow.compute as pc

    # Every value equal to the first (NaN equals nothing): a comparison, not a hash of each value.
    return column.null_count == 0 and len(column) > 1 and pc.all(pc.equal(column, column[0])).as_py()


def _copy_insert(dbapi, table: str, rows, conflict_key: str | None) -> int:
    """bulk_insert on PostgreSQL (psycopg 3 or psycopg2).

    Without conflict_key: COPY into the table. With one: COPY into the table under a savepoint
    first (new data, the usual case, has no conflict: one write per row); a unique violation
    rolls back to the savepoint and the rows go through a temporary table instead, moved with
    one INSERT ... SELECT ... ON CONFLICT DO NOTHING, which reads it in the order written."""
    columns = ", ".join(quote(name) for name in rows.schema.names)
    with contextlib.closing(dbapi.cursor()) as cursor:
        if conflict_key is None:
            _copy(cursor, quote(table), columns, rows)
            return rows.num_rows
        cursor.execute("SAVEPOINT bulk_insert")
        try:
            _copy(cursor, quote(table), columns, rows)
        except Exception as exc:
            if _sqlstate(exc) != UNIQUE_VIOLATION:
                raise
            cursor.execute("ROLLBACK TO SAVEPOINT bulk_insert")
        else:
            cursor.execute("RELEASE SAVEPOINT bulk_insert")
            return rows.num_rows
        stage = quote(f"bulk_{table}")
        # LIKE copies the columns and NOT NULLs, not the keys: every row lands in the stage.
        cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} (LIKE {quote(table)}) ON COMMIT DROP")
        cursor.execute(f"TRUNCATE {stage}")
        _copy(cursor, stage, columns, rows)
        cursor.execute(
            f"INSERT INTO {quote(table)} ({columns}) SELECT {columns} FROM {stage}"
            f" ON CONFLICT ({quote(conflict_key)}) DO NOTHING"
        )
        return cursor.rowcount


UNIQUE_VIOLATION = "23505"  # PostgreSQL's SQLSTATE


def _sqlstate(exc: Exception) -> str | None:
    """The SQLSTATE of a psycopg 3 (sqlstate) or psycopg2 (pgcode) error, None for other errors."""
    return getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)


COPY_BLOCK_ROWS = 10_000  # rows per block handed to COPY (1-2 MB)


def _copy(cursor, table: str, columns: str, rows) -> None:
    """COPY `rows` into `table` (quoted) in PostgreSQL's binary format when mlops.io.pg_binary
    can encode every column (the server then parses no text: see its docstring); else in CSV,
    and the server decides what the text means (or refuses it)."""
    from mlops.io import pg_binary

    try:
        oids = pg_binary.column_type_oids(cursor, table)
        pg_binary.check_encodable(rows, oids)
    except pg_binary.NotEncodable:
        _copy_blocks(cursor, f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)", _csv_blocks(rows))
        return
    _copy_blocks(cursor, f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT binary)", _binary_blocks(rows, oids))


def _binary_blocks(rows, oids: dict):
    """Blocks of the binary COPY stream of `rows`: the header with the first, the trailer after the last."""
    from mlops.io import pg_binary

    starts = range(0, max(rows.num_rows, 1), COPY_BLOCK_ROWS)
    for start in starts:
        yield pg_binary.encode(rows.slice(start, COPY_BLOCK_ROWS), oids, header=start == 0, trailer=start == starts[-1])


def _csv_blocks(rows):
    """Blocks of `rows` in CSV as COPY reads it: every string quoted where needed, no header."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    options = pa_csv.WriteOptions(include_header=False, quoting_style="needed")
    for start in range(0, rows.num_rows, COPY_BLOCK_ROWS):
        sink = pa.BufferOutputStream()
        pa_csv.write_csv(rows.slice(start, COPY_BLOCK_ROWS), sink, options)
        yield sink.getvalue()


def _copy_blocks(cursor, sql: str, blocks) -> None:
    """COPY ... FROM STDIN of the byte blocks an iterator yields; the next block is made in a
    thread while the server takes the current one (pyarrow, NumPy and the socket wait release
    the GIL), so at most two blocks are held. psycopg2 (no streaming COPY) reads them as a file."""
    import concurrent.futures
    import io

    if not hasattr(cursor, "copy"):
        cursor.copy_expert(sql, io.BytesIO(b"".join(bytes(block) for block in blocks)))
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool, cursor.copy(sql) as copy:
        pending = pool.submit(next, blocks, None)
        while (block := pending.result()) is not None:
            pending = pool.submit(next, blocks, None)
            copy.write(memoryview(block))


def engine():
    from mlops.io.connections import warehouse_engine

    return warehouse_engine()


# `CREATE [UNIQUE] INDEX IF NOT EXISTS <name>` of the schema files.
_CREATE_INDEX = re.compile(r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.IGNORECASE)
# `DROP INDEX IF EXISTS <name>`: an index older warehouses had.
_DROP_INDEX = re.compile(r"DROP\s+INDEX\s+IF\s+EXISTS\s+(\w+)", re.IGNORECASE)
# `ALTER TABLE <table> ADD COLUMN <column> ...`: a column added to a table of older warehouses.
_ADD_COLUMN = re.compile(r"ALTER\s+TABLE\s+(\w+)\s+ADD\s+COLUMN\s+(\w+)", re.IGNORECASE)


def ensure_schema() -> None:
    """Create the warehouse tables and indexes if they do not exist.

    Every file in include/sql/schema/ runs, in name order, one transaction each; each DAG's
    tables have their own file. Not cached: CREATE TABLE IF NOT EXISTS costs milliseconds, and
    a cache keyed by URL went stale when a database of the same name was dropped and created
    again. An index that exists is skipped: PostgreSQL takes a SHARE lock on the table before
    it sees that the index exists, so the statement would wait behind any open write (and a
    `DROP INDEX IF EXISTS` of an index that is gone is skipped too).

    `ALTER TABLE t ADD COLUMN c ...` (neither SQLite nor every PostgreSQL statement has
    `IF NOT EXISTS` for it) runs only when the catalog lacks the column, and the `UPDATE`
    statements right after it (the new column's backfill for existing rows) run only with it,
    in the same transaction: an older warehouse is migrated exactly once.
    """
    import sqlalchemy as sa

    for path in sorted((SQL_DIR / "schema").glob("*.sql")):
        with engine().begin() as conn:
            existing = _index_names(conn)
            skipping_backfill = False
            for statement in split_statements(render_sql(f"schema/{path.name}")):
                index, column = _CREATE_INDEX.match(statement), _ADD_COLUMN.match(statement)
                dropped = _DROP_INDEX.match(statement)
                if column:
                    skipping_backfill = column.group(2) in _column_names(conn, column.group(1))
                elif not statement.upper().startswith("UPDATE"):
                    skipping_backfill = False
                made = (index and index.group(1) in existing) or (dropped and dropped.group(1) not in existing)
                if made or skipping_backfill:
                    continue
                conn.execute(sa.text(statement))


def _index_names(conn) -> set[str]:
    """Names of the indexes in the warehouse's schema, read from the catalog (no table locks)."""
    import sqlalchemy as sa

    if conn.dialect.name == "postgresql":
        sql = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'index'"
    return {row[0] for row in conn.execute(sa.text(sql))}


def _column_names(conn, table: str) -> set[str]:
    """Names of a table's columns, read from the catalog."""
    import sqlalchemy as sa

    if conn.dialect.name == "postgresql":
        sql = "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = :t"
        return {row[0] for row in conn.execute(sa.text(sql), {"t": table})}
    return {row[1] for row in conn.execute(sa.text(f"PRAGMA table_info({quote(table)})"))}


def read_sql(name: str, params: dict | None = None, **context):
    """Run a query file and return a pandas DataFrame."""
    import pandas as pd
    import sqlalchemy as sa

    with engine().connect() as conn:
        return pd.read_sql_query(sa.text(render_sql(name, **context)), conn, params=params or {})
