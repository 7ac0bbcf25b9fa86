"""The SQL warehouse: SQL files under include/sql/, run through the warehouse connection.

SQL files are Jinja templates rendered with the data set configuration (column names and
types), so the SQL stays in include/sql/ and stays portable between SQLite and PostgreSQL.
Identifiers of data set columns are always double-quoted, keeping their configured case.
"""

from __future__ import annotations

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
    return {"columns": columns, "time_column": dataset.time_column, "quote": quote}


def render_sql(name: str, **context) -> str:
    """Render include/sql/<name> with the configuration's columns (and any extra context)."""
    import jinja2

    template = jinja2.Template(Path(SQL_DIR / name).read_text(), undefined=jinja2.StrictUndefined)
    return template.render(**_template_context(), **context)


def split_statements(sql: str) -> list[str]:
    """Split a script on semicolons at line ends (our SQL files keep one statement per block)."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [stmt.strip() for stmt in "\n".join(lines).split(";") if stmt.strip()]


def insert_many(cursor, sql: str, rows: list[tuple]) -> None:
    """executemany on a DB-API cursor, for SQL written with `?` placeholders: sqlite3 takes
    them as they are, the PostgreSQL drivers (psycopg 3 pipelines executemany) take %s."""
    if not type(cursor).__module__.startswith("sqlite3"):
        sql = sql.replace("?", "%s")
    cursor.executemany(sql, rows)


def engine():
    from mlops.io.connections import warehouse_engine

    return warehouse_engine()


# `CREATE [UNIQUE] INDEX IF NOT EXISTS <name>` of the schema files.
_CREATE_INDEX = re.compile(r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.IGNORECASE)
# `ALTER TABLE <table> ADD COLUMN <column> ...`: a column added to a table of older warehouses.
_ADD_COLUMN = re.compile(r"ALTER\s+TABLE\s+(\w+)\s+ADD\s+COLUMN\s+(\w+)", re.IGNORECASE)


def ensure_schema() -> None:
    """Create the warehouse tables and indexes if they do not exist.

    Every file in include/sql/schema/ runs, in name order, one transaction each; each DAG's
    tables have their own file. Not cached: CREATE TABLE IF NOT EXISTS costs milliseconds, and
    a cache keyed by URL went stale when a database of the same name was dropped and created
    again. An index that exists is skipped: PostgreSQL takes a SHARE lock on the table before
    it sees that the index exists, so the statement would wait behind any open write.

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
                if column:
                    skipping_backfill = column.group(2) in _column_names(conn, column.group(1))
                elif not statement.upper().startswith("UPDATE"):
                    skipping_backfill = False
                if (index and index.group(1) in existing) or skipping_backfill:
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
