"""The shape of a CSV file before pandas reads it: its real format, its header, and the field
count of every record.

pandas' C parser pads a short row with NaN without a word and, for a long row, either raises,
skips it or truncates it depending on where it is; either way values can end up under another
column. check_shape() counts the fields of every record itself, vectorised with numpy on
blocks of bytes (delimiters and newlines inside double quotes do not count: a character is
inside quotes when an odd number of quote characters precede it in its record, RFC 4180
escaping "" keeps the parity), and writes a copy without the misshapen records only when
there are any, so pandas never sees a record of the wrong length.

Memory stays at one block (plus the row numbers of misshapen records). Irregular quoting (a
quote inside an unquoted field, which pandas and the csv module read as a literal character)
falls back to the csv module, record by record.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import gzip
import io
from pathlib import Path

import numpy as np

BLOCK = 8 * 1024 * 1024
EXAMPLES = 10
QUOTE, DELIM, NEWLINE = 34, 44, 10
BLANK_BYTES = b" \t\r"

# First bytes of formats people send instead of CSV text (after gzip is undone, if any).
MAGIC = (
    (b"\x1f\x8b", "a gzip file inside a gzip file (compressed twice)"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\xd0\xcf\x11\xe0", "an old Microsoft Office file (xls/doc)"),
    (b"PAR1", "a Parquet file"),
    (b"%PDF", "a PDF document"),
    (b"\xff\xfe", "UTF-16 text (little-endian byte-order mark)"),
    (b"\xfe\xff", "UTF-16 text (big-endian byte-order mark)"),
    (b"BZh", "a bzip2 file"),
    (b"\xfd7zXZ", "an xz file"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"SQLite format 3", "an SQLite database"),
)


class ShapeError(Exception):
    """The file is not CSV text of the expected kind (the message says what it is)."""


@dataclasses.dataclass
class Shape:
    """What check_shape() found. Row numbers count data records from 1 (the header is not one);
    lines are physical lines of the (decompressed) file, from 1."""

    header: list[str]
    expected_fields: int
    data_rows: int = 0
    bad_count: int = 0
    examples: list[dict] = dataclasses.field(default_factory=list)
    clean_path: Path | None = None  # a copy without misshapen records, when there were any

    def note(self, row: int, line: int, found: int) -> None:
        self.bad_count += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append({"row": row, "line": line, "expected": self.expected_fields, "found": found})


def real_format(first_bytes: bytes) -> str | None:
    """What a file is when its first bytes say it is not CSV text, else None."""
    if first_bytes.startswith(b"PK\x03\x04") and (b"xl/" in first_bytes or b"[Content_Types]" in first_bytes):
        return "an Excel workbook (xlsx, a zip archive)"
    for magic, name in MAGIC:
        if first_bytes.startswith(magic):
            return name
    return None


def open_stream(path: Path, compression: str | None):
    return gzip.open(path, "rb") if compression == "gzip" else open(path, "rb")


def check_shape(path: Path, compression: str | None, workdir: Path) -> Shape:
    """Header and field count of every record of a CSV file (comma-delimited, double quotes).

    Raises ShapeError for a file whose first bytes name another format, or whose header is not
    UTF-8, and lets EOFError / gzip.BadGzipFile / zlib.error through for a broken gzip stream.
    """
    with open_stream(path, compression) as stream:
        first = stream.read(4096)
    found = real_format(first)
    if found:
        raise ShapeError(f"the file is {found}, not CSV text")
    try:
        shape = _fast_pass(path, compression)
    except _IrregularQuotes:
        shape = _csv_pass(path, compression)
    if shape is not None and shape.bad_count:
        shape.clean_path = workdir / "wellformed.csv"
        _write_wellformed(path, compression, shape, shape.clean_path)
    return shape


class _IrregularQuotes(Exception):
    pass


def _header_names(record: bytes) -> list[str]:
    try:
        text = record.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ShapeError(
            f"not UTF-8 text: byte {exc.object[exc.start : exc.start + 1]!r} cannot be decoded (in the header)"
        ) from None
    return next(csv.reader([text.rstrip("\r\n")]), [])


def _records(path: Path, compression: str | None):
    """(block bytes, record starts, record ends, field counts, physical line of each record's
    end) per block of whole records; raises _IrregularQuotes for quoting numpy cannot follow."""
    carry, lines_before = b"", 0
    with open_stream(path, compression) as stream:
        while True:
            block = stream.read(BLOCK)
            data = carry + block
            if not block:
                if data and not data.endswith(b"\n"):
                    data += b"\n"
                if data:
                    yield _split(data, lines_before)
                return
            parts = _split(data, lines_before)
            if parts is None:  # not one whole record yet (a huge quoted field)
                carry = data
                continue
            cut = int(parts[2][-1]) + 1
            carry = data[cut:]
            lines_before += data.count(b"\n", 0, cut)
            yield parts


def _check_quotes(arr: np.ndarray, quotes: np.ndarray) -> None:
    """Raise _IrregularQuotes unless every quote opens or closes a field (or is doubled)."""
    if not len(quotes):
        return
    before = arr[np.maximum(quotes - 1, 0)]
    before[quotes == 0] = NEWLINE
    after = arr[np.minimum(quotes + 1, len(arr) - 1)]
    after[quotes == len(arr) - 1] = NEWLINE
    opening = (before == DELIM) | (before == NEWLINE) | (before == QUOTE)
    closing = (after == DELIM) | (after == NEWLINE) | (after == QUOTE) | (after == 13)
    if not (opening | closing).all():
        raise _IrregularQuotes


def _split(body: bytes, lines_before: int):
    """The whole records of `body` (None if it has none). With regular quoting the quote
    characters pair up into quoted intervals (a doubled quote closes one and opens the next);
    a newline or delimiter inside an interval does not count. Binary searches over positions:
    a running sum over every byte would cost ten times more."""
    arr = np.frombuffer(body, dtype=np.uint8)
    quotes = np.flatnonzero(arr == QUOTE)
    _check_quotes(arr, quotes)
    newlines = np.flatnonzero(arr == NEWLINE)
    ends = newlines[np.searchsorted(quotes, newlines) % 2 == 0] if len(quotes) else newlines
    if not len(ends):
        return None
    delims = np.flatnonzero(arr == DELIM)
    counts = np.diff(np.searchsorted(delims, ends), prepend=0) + 1
    if len(quotes) > 1:
        opens, closes = quotes[0 : len(quotes) - 1 : 2], quotes[1::2]
        quoted = np.searchsorted(delims, closes) - np.searchsorted(delims, opens)
        counts -= np.bincount(np.searchsorted(ends, opens), weights=quoted, minlength=len(ends))[: len(ends)].astype(
            counts.dtype
        )
    starts = np.concatenate(([0], ends[:-1] + 1))
    lines = lines_before + np.searchsorted(newlines, ends) + 1
    return body, starts, ends, counts, lines


def _is_blank(record: bytes) -> bool:
    return not record.strip(BLANK_BYTES + b"\n")


def _fast_pass(path: Path, compression: str | None) -> Shape | None:
    shape = None
    for body, starts, ends, counts, lines in _records(path, compression):
        single = np.flatnonzero(counts == 1)  # only a record without a delimiter can be blank
        blank = np.zeros(len(counts), dtype=bool)
        for i in single:
            blank[i] = _is_blank(body[starts[i] : ends[i]])
        keep = ~blank
        starts, ends, counts, lines = starts[keep], ends[keep], counts[keep], lines[keep]
        if shape is None and len(counts):
            shape = Shape(header=_header_names(body[starts[0] : ends[0]]), expected_fields=int(counts[0]))
            starts, ends, counts, lines = starts[1:], ends[1:], counts[1:], lines[1:]
        if shape is None:
            continue
        for i in np.flatnonzero(counts != shape.expected_fields):
            shape.note(shape.data_rows + int(i) + 1, int(lines[i]), int(counts[i]))
        shape.data_rows += len(counts)
    return shape


def _csv_pass(path: Path, compression: str | None) -> Shape | None:
    """The same count with the csv module (slow, only for irregularly quoted files)."""
    shape = None
    with open_stream(path, compression) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        reader = csv.reader(text)
        for record in reader:
            if not record or (len(record) == 1 and not record[0].strip(" \t\r")):
                continue
            if shape is None:
                shape = Shape(header=record, expected_fields=len(record))
                continue
            shape.data_rows += 1
            if len(record) != shape.expected_fields:
                shape.note(shape.data_rows, reader.line_num, len(record))
    return shape


def _write_wellformed(path: Path, compression: str | None, shape: Shape, out_path: Path) -> None:
    """A copy of the file without blank and misshapen records (byte for byte otherwise)."""
    with open(out_path, "wb") as out:
        if shape.clean_path is not None and _has_irregular_quotes(path, compression):
            _write_wellformed_csv(path, compression, shape, out)
            return
        header_written = False
        for body, starts, ends, counts, _lines in _records(path, compression):
            for start, end, count in zip(starts.tolist(), ends.tolist(), counts.tolist(), strict=True):
                record = body[start : end + 1]
                if count == 1 and _is_blank(record):
                    continue
                if not header_written:
                    header_written = True
                    out.write(record)
                elif count == shape.expected_fields:
                    out.write(record)


def _has_irregular_quotes(path: Path, compression: str | None) -> bool:
    try:
        for _ in _records(path, compression):
            pass
    except _IrregularQuotes:
        return True
    return False


def _write_wellformed_csv(path: Path, compression: str | None, shape: Shape, out) -> None:
    text_out = codecs.getwriter("utf-8")(out)
    writer = csv.writer(text_out, lineterminator="\n")
    with open_stream(path, compression) as raw:
        for record in csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")):
            if not record or (len(record) == 1 and not record[0].strip(" \t\r")):
                continue
            if len(record) == shape.expected_fields:
                writer.writerow(record)
