"""An independent reading of a CSV file under the data set's declared types (csv module and
the standard library, no pandas), to check what ingest staged or loaded against.

Each file record with the header's field count becomes one tuple in warehouse terms:
timestamps as UTC text, floats normalised to 12 significant digits, ints, strings verbatim,
and None for a configured missing marker or a value nulled by a set_null rule. Records the
oracle cannot convert give no tuple (ingest must drop them too).
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import zoneinfo
from datetime import UTC, datetime
from pathlib import Path

TIME_TEXT = "%Y-%m-%d %H:%M:%S"


def _open_text(path: Path):
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return io.StringIO(raw.decode("utf-8-sig", errors="replace"), newline="")  # undecodable: no match


def _time(text: str, dataset) -> str:
    parsed = datetime.strptime(text, dataset.time_format)
    if parsed.tzinfo is None and dataset.time_zone != "UTC":
        parsed = parsed.replace(tzinfo=zoneinfo.ZoneInfo(dataset.time_zone))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed.strftime(TIME_TEXT)


def norm(value):
    """A staged or loaded value in the oracle's terms."""
    if value is None:
        return None
    if isinstance(value, float):
        return None if math.isnan(value) else f"{value + 0.0:.12g}"  # -0.0 is stored as 0
    if hasattr(value, "item"):
        return norm(value.item())
    return value


def convert(record: dict, dataset) -> tuple | None:
    """One record (column -> text) as the tuple ingest would store, or None if unconvertible."""
    out = []
    for name, spec in dataset.columns.items():
        text = record[name]
        if text in dataset.missing_values_of(name):
            out.append(None)
            continue
        try:
            if spec.type == "datetime":
                out.append(_time(text, dataset))
            elif spec.type == "string":
                out.append(text)
            else:
                number = float(text.strip())
                if math.isnan(number) or math.isinf(number):
                    return None
                if spec.type == "int" and number != int(number):
                    return None
                low = spec.min if spec.min is not None else -math.inf
                high = spec.max if spec.max is not None else math.inf
                if not low <= number <= high and spec.on_out_of_range == "set_null":
                    out.append(None)
                else:
                    out.append(int(number) if spec.type == "int" else f"{number + 0.0:.12g}")
        except (ValueError, OverflowError):
            return None
    return tuple(out)


def file_rows(path: Path, dataset) -> set[tuple]:
    """Every convertible well-formed record of a CSV file, converted."""
    reader = csv.reader(_open_text(path))
    header = next(reader)
    rows = set()
    for record in reader:
        if len(record) != len(header):
            continue
        converted = convert(dict(zip(header, record, strict=True)), dataset)
        if converted is not None:
            rows.add(converted)
    return rows


def staged_rows(staged: Path, dataset) -> list[tuple]:
    """The rows validate_file staged (a Parquet file), in the oracle's terms."""
    import pyarrow.parquet as pq

    table = pq.read_table(staged, columns=list(dataset.columns)).to_pylist()
    return [tuple(norm(row[name]) for name in dataset.columns) for row in table]
