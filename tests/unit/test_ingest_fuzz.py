"""Hypothesis fuzz of the validation-and-load path on a real (SQLite) warehouse.

Valid CSV files cut from the example data are mutated the ways producers break them (fields
dropped or added, columns swapped, quotes, delimiters, encodings, BOMs, stray bytes, odd
time strings, codes with leading zeros, missing markers, blank lines, repeated rows), then
validate_file and load_batch run on them as ingest does. Invariants:

* no exception escapes (bad input is a quarantine or dropped rows, never a crash);
* every row the warehouse holds for the batch equals a row of the file under the declared
  conversions (tests/csv_oracle.py, an independent reading with the csv module);
* rows in = kept + dropped + exact duplicates;
* a quarantined batch stages nothing that gets loaded (the load is never called for it).

Seeded (derandomize) and bounded (max_examples) so it runs in well under two minutes.
A failing example found here becomes a file of the bad-input corpus.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import csv_oracle
import pytest
import sqlalchemy as sa
from helpers import config_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops.config import get_config
from mlops.ingest import pipeline as ingest

BAD = Path(__file__).resolve().parents[1] / "data" / "bad"
ODD_TIMES = [
    "2016-01-01T00:00:00",
    "2016-01-01 00:00:00+02:00",
    "2401-01-01 00:00:00",
    "1850-06-01 12:00:00",
    " 2016-01-01 00:00:00",
    "2016-02-30 00:00:00",
    "2016-1-2 3:4:5",
    "",
    "NA",
    "01/02/2016 00:00",
]
ODD_VALUES = ["", "NA", "null", "None", "n/a", "02980", "0", "-0", "1e3", " 5 ", "nan", "inf", "1,5", '"', "x\ny"]


def _base() -> tuple[list[str], list[list[str]]]:
    with open(BAD / "pressure_zero.csv", encoding="utf-8", newline="") as source:
        reader = csv.reader(source)
        return next(reader), [row for row, _ in zip(reader, range(30), strict=False)]


HEADER, ROWS = _base()

row_index = st.integers(0, len(ROWS) - 1)
col_index = st.integers(0, len(HEADER) - 1)
mutation = st.one_of(
    st.tuples(st.just("drop_field"), row_index, col_index),
    st.tuples(st.just("extra_field"), row_index, st.sampled_from(ODD_VALUES)),
    st.tuples(st.just("swap_in_row"), row_index, col_index, col_index),
    st.tuples(st.just("value"), row_index, col_index, st.sampled_from(ODD_VALUES)),
    st.tuples(st.just("time"), row_index, st.sampled_from(ODD_TIMES)),
    st.tuples(st.just("code"), row_index, st.from_regex(r"0[0-9]{1,5}", fullmatch=True)),
    st.tuples(st.just("drop_label"), row_index),
    st.tuples(st.just("codes_everywhere"), row_index, st.sampled_from(["02980", "00", "NA", "null"])),
    st.tuples(st.just("repeat_row"), row_index),
    st.tuples(st.just("blank_line"), row_index),
)
file_level = st.fixed_dictionaries(
    {
        "delimiter": st.sampled_from([",", ",", ",", ";", "\t"]),
        "line_end": st.sampled_from(["\n", "\r\n"]),
        "quoting": st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]),
        "encoding": st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8-sig", "latin-1", "utf-16"]),
        "swap_header": st.one_of(st.none(), st.tuples(col_index, col_index)),
        "stray": st.one_of(st.none(), st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=3))),
    }
)


def _apply_mutations(rows: list[list[str]], mutations: list[tuple]) -> set[int]:
    """Apply the mutations to `rows` in place; the row indices a blank line follows."""
    blank_after: set[int] = set()
    for op, i, *args in mutations:
        row = rows[i]
        if op == "drop_field" and len(row) > 1:
            del row[args[0] % len(row)]
        elif op == "extra_field":
            row.append(args[0])
        elif op == "swap_in_row":
            a, b = args[0] % len(row), args[1] % len(row)
            row[a], row[b] = row[b], row[a]
        elif op == "value":
            row[args[0] % len(row)] = args[1]
        elif op == "time":
            row[0] = args[0]
        elif op == "code":
            row[1] = args[0]
        elif op == "drop_label" and len(row) > 8:
            del row[8]  # the next column's 0/1 would slide into the label source
        elif op == "codes_everywhere":
            for other in rows:
                other[1] = args[0] if i % 2 else args[0] + str(len(other))
        elif op == "repeat_row":
            rows.append(list(row))
        elif op == "blank_line":
            blank_after.add(i)
    return blank_after


def _build(mutations: list[tuple], options: dict) -> bytes:
    header, rows = list(HEADER), [list(r) for r in ROWS]
    blank_after = _apply_mutations(rows, mutations)
    if options["swap_header"]:
        a, b = options["swap_header"]
        header[a], header[b] = header[b], header[a]
    buffer = io.StringIO()
    writer = csv.writer(
        buffer, delimiter=options["delimiter"], lineterminator=options["line_end"], quoting=options["quoting"]
    )
    writer.writerow(header)
    for i, row in enumerate(rows):
        writer.writerow(row)
        if i in blank_after:
            buffer.write(options["line_end"])
    data = buffer.getvalue().encode(options["encoding"], errors="replace")
    if options["stray"]:
        where, junk = options["stray"]
        at = int(where * len(data))
        data = data[:at] + junk + data[at:]
    return data


@contextlib.contextmanager
def fuzz_warehouse(connection: dict):
    """For a block: `connection` (an Airflow connection dict) as the warehouse, and a lenient
    row policy, so that files with several bad rows are loaded and checked too."""
    name = f"AIRFLOW_CONN_{get_config().connections.warehouse.upper()}"
    with config_env(**{name: json.dumps(connection), "MLOPS__VALIDATION__MAX_BAD_ROW_FRACTION": "0.5"}):
        yield


@pytest.fixture(scope="module")
def sqlite_warehouse(tmp_path_factory):
    """A SQLite warehouse file of this module's own (the real load path, no services)."""
    path = tmp_path_factory.mktemp("fuzz") / "warehouse.db"
    with fuzz_warehouse({"conn_type": "sqlite", "host": str(path)}):
        yield path


def FUZZ_SETTINGS(max_examples: int) -> settings:  # noqa: N802 - used as a decorator, like settings
    """Hypothesis settings of this module's fuzz tests: seeded, no deadline, a shared tmp_path."""
    return settings(
        derandomize=True,
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def check_invariants(data: bytes, workdir: Path, batch_id: str) -> dict:
    """Validate and (if passed) load one file; assert the invariants; return the result."""
    dataset = get_config().dataset
    source, staged = workdir / "file.csv", workdir / "staged.parquet"
    source.write_bytes(data)
    staged.unlink(missing_ok=True)
    result = ingest.validate_file(source, staged, "landing/fuzz.csv")
    assert result["status"] in ("passed", "quarantined")
    assert result["rows_in"] >= 0 and len(result.get("reason") or "") < 2000
    if result["status"] != "passed":
        return result
    assert result["rows_in"] == result["rows_kept"] + result["rows_dropped"] + result["rows_duplicate"], result
    with ingest.shared_connections():
        with ingest._engine().begin() as conn:
            conn.execute(sa.text("DELETE FROM observations"))
        ingest.load_batch(
            staged,
            {"batch_id": batch_id, "object_key": "landing/fuzz.csv", "checksum": batch_id, "status": "loaded"},
        )
        with ingest._engine().connect() as conn:
            columns = ", ".join(f'"{c}"' for c in dataset.columns)
            stored = conn.execute(sa.text(f"SELECT {columns} FROM observations WHERE batch_id = :b"), {"b": batch_id})
            stored = [tuple(csv_oracle.norm(v) for v in row) for row in stored]
    expected = csv_oracle.file_rows(source, dataset) if stored else set()
    assert len(stored) == result["rows_kept"]
    strays = [row for row in stored if row not in expected]
    assert not strays, (strays[:3], data[:600])
    return result


@FUZZ_SETTINGS(max_examples=70)
@given(mutations=st.lists(mutation, max_size=6), options=file_level)
def test_mutated_files_never_crash_shift_or_lose_rows(sqlite_warehouse, tmp_path, mutations, options):
    data = _build(mutations, options)
    batch_id = ingest.batch_id_of_content("landing/fuzz.csv", data)
    check_invariants(data, tmp_path, batch_id)


class _CollectingSink:
    """A chunk sink (as LoadDuringValidation) that keeps what validate_file hands it."""

    def __init__(self):
        self.tables, self.discarded = [], False

    def write(self, table) -> None:
        self.tables.append(table)

    def discard(self) -> None:
        self.discarded = True


@FUZZ_SETTINGS(max_examples=40)
@given(mutations=st.lists(mutation, max_size=6), options=file_level)
def test_validation_into_a_sink_gives_the_result_and_rows_of_the_staging_file(tmp_path, mutations, options):
    """With a sink the chunks are read before the field counts are known (the load during
    validation starts earlier); the result and the kept rows must be those of the pass that
    stages to a file. A guess that fails (misshapen records, conflicting timestamps) discards
    the sink and stages to the file instead."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = tmp_path / "file.csv"
    source.write_bytes(_build(mutations, options))
    staged = [tmp_path / "plain.parquet", tmp_path / "sunk.parquet"]
    for path in staged:  # tmp_path is shared by the examples
        path.unlink(missing_ok=True)
    plain = ingest.validate_file(source, tmp_path / "plain.parquet", "landing/fuzz.csv")
    sink = _CollectingSink()
    sunk = ingest.validate_file(source, tmp_path / "sunk.parquet", "landing/fuzz.csv", sink=sink)
    assert sunk == plain
    if sink.discarded:
        assert [p.exists() for p in staged] in ([True, True], [False, False])
        if staged[0].exists():
            assert pq.read_table(staged[1]).equals(pq.read_table(staged[0]))
    else:
        assert not staged[1].exists()
        expected = pq.read_table(staged[0]) if staged[0].exists() else None
        got = pa.concat_tables(sink.tables) if sink.tables else None
        assert (got is None and expected is None) or got.equals(expected)
