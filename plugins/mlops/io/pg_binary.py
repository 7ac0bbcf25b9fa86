"""Arrow columns to PostgreSQL's binary COPY format, vectorised with NumPy.

Why: on the warehouse's bulk load, COPY in CSV costs the client the text formatting of every
float (shortest round-trip digits) and the server its parsing (float8in); the binary format
carries the eight bytes of each float as they are. Measured on the ingest benchmark: see
README, "Ingest".

Format (PostgreSQL manual, "COPY", section "Binary Format"): an 11-byte signature, a 32-bit
flags field and a 32-bit header-extension length (both 0 here); per row a 16-bit field count,
then per field a 32-bit byte length (-1: NULL) and that many bytes; a 16-bit -1 ends the data.
All integers are in network byte order (big-endian). Field bytes are each type's binary
"send" form: float8/float4 and int8/int4/int2 big-endian, bool one byte, text its UTF-8 bytes.

How: every row is first laid out in a (rows, widest row) byte matrix, each column in a slot as
wide as its widest value, filled with whole-column (strided) copies; a mask of the bytes each
row really has (no data for NULLs, a string's own length) then packs the matrix into the
stream in one gather. Rows without NULLs and strings of one length skip the gather.
"""

from __future__ import annotations

import numpy as np

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
HEADER = SIGNATURE + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
TRAILER = (-1).to_bytes(2, "big", signed=True)

# PostgreSQL type OID -> (kind, NumPy big-endian dtype of the value). OIDs: pg_type.dat.
TYPES = {
    701: ("number", ">f8"),  # float8 (double precision)
    700: ("number", ">f4"),  # float4 (real)
    20: ("integer", ">i8"),  # int8 (bigint)
    23: ("integer", ">i4"),  # int4 (integer)
    21: ("integer", ">i2"),  # int2 (smallint)
    16: ("boolean", "u1"),  # bool
    25: ("text", None),  # text
    1043: ("text", None),  # varchar
}


class NotEncodable(Exception):
    """A column whose Arrow type or values have no binary form here for its PostgreSQL type
    (the caller falls back to the text format, where the server decides)."""


def column_type_oids(cursor, table: str) -> dict[str, int]:
    """{column name: type OID} of `table` (a quoted identifier, possibly temporary), from pg_attribute."""
    cursor.execute(
        "SELECT attname, atttypid::int FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        (table,),
    )
    return dict(cursor.fetchall())


def check_encodable(table, oids: dict[str, int]) -> None:
    """Raise NotEncodable unless every column of `table` (pyarrow Table or RecordBatch) can be
    written in binary for its column's type OID (`oids`, from column_type_oids): a type pair
    encode knows, and integers within their column's range."""
    import pyarrow.compute as pc

    for field, column in zip(table.schema, table.columns, strict=True):
        oid = oids.get(field.name)
        if not _encodable(field.type, oid):
            raise NotEncodable(f"column {field.name!r}: Arrow {field.type} into PostgreSQL type OID {oid}")
        dtype = TYPES[oid][1]
        if TYPES[oid][0] == "integer" and column.null_count < len(column):
            info, bounds = np.iinfo(np.dtype(dtype)), pc.min_max(column)
            if bounds["min"].as_py() < info.min or bounds["max"].as_py() > info.max:
                raise NotEncodable(f"column {field.name!r}: an integer does not fit {dtype}")


def _encodable(arrow_type, oid: int | None) -> bool:
    import pyarrow as pa

    kind, dtype = TYPES.get(oid, (None, None))
    if kind is None:
        return False
    if pa.types.is_null(arrow_type):
        return True
    if kind == "number":
        # float64 (or an integer, rounded as the server's float8in would) into float8, float32
        # into float4 only: widening a float32 would store other digits than its text form.
        if dtype == ">f8":
            return arrow_type == pa.float64() or pa.types.is_integer(arrow_type)
        return arrow_type == pa.float32()
    if kind == "integer":
        return pa.types.is_integer(arrow_type)
    if kind == "boolean":
        return pa.types.is_boolean(arrow_type)
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


def encode(table, oids: dict[str, int], header: bool = False, trailer: bool = False) -> bytes:
    """The binary COPY rows of `table` (a pyarrow Table or RecordBatch, its fields in the COPY's
    column order), with the stream's header and trailer if asked. The caller has checked the
    whole table with check_encodable first (once, not per block of it)."""
    n = table.num_rows
    slots = [_slot(table.column(i), TYPES[oids[name]][1], n) for i, name in enumerate(table.schema.names)]
    # One structured record per row: typed field copies are much faster than byte columns.
    fields = [("count", ">i2")]
    for i, s in enumerate(slots):
        fields += [(f"length{i}", ">i4"), (f"value{i}", s.data.dtype, s.data.shape[1:])]
    rows = np.empty(n, np.dtype(fields))
    rows["count"] = len(slots)
    for i, s in enumerate(slots):
        rows[f"length{i}"] = s.lengths
        rows[f"value{i}"] = s.data
    body = rows.view(np.uint8).reshape(n, rows.dtype.itemsize)
    if any(s.present is not None for s in slots):
        # The same layout, a flag per byte: which bytes each row really has.
        keep = np.ones(n, np.dtype([(name, "?", (rows.dtype.fields[name][0].itemsize,)) for name in rows.dtype.names]))
        for i, s in enumerate(slots):
            if s.present is not None:
                keep[f"value{i}"] = s.present
        body = body[keep.view(np.bool_).reshape(body.shape)]
    return (HEADER if header else b"") + body.tobytes() + (TRAILER if trailer else b"")


class _Slot:
    """One column laid out for the row records: lengths (rows,) int32 with -1 for NULL, or one
    int32 for every row; data (rows,) of the big-endian value type, or (rows, slot width) uint8
    for text; present (rows, slot bytes) bool, or None when every byte is kept."""

    __slots__ = ("data", "lengths", "present")

    def __init__(self, lengths, data, present):
        self.lengths, self.data, self.present = lengths, data, present


def _slot(column, dtype: str | None, n: int) -> _Slot:
    import pyarrow as pa

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    valid = None if column.null_count == 0 else column.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_null(column.type):
        return _Slot(np.full(n, -1, np.int32), np.empty((n, 0), np.uint8), None)
    if dtype is None:
        return _text_slot(column, valid, n)
    return _fixed_slot(column, valid, np.dtype(dtype))


def _fixed_slot(column, valid, dtype: np.dtype) -> _Slot:
    """A number, integer or boolean column as its big-endian bytes (NULLs: length -1, no bytes).
    valid: (rows,) bool, None when the column has no NULL."""
    import pyarrow as pa

    if pa.types.is_boolean(column.type):
        values = column.fill_null(False).to_numpy(zero_copy_only=False).astype(np.uint8)
    else:
        values = column.fill_null(0).to_numpy(zero_copy_only=False)  # ranges: check_encodable
    data = values.astype(dtype, copy=False)
    if valid is None:
        return _Slot(np.int32(dtype.itemsize), data, None)
    return _Slot(
        np.where(valid, dtype.itemsize, -1).astype(np.int32), data, np.repeat(valid[:, None], dtype.itemsize, axis=1)
    )


def _text_slot(column, valid, n: int) -> _Slot:
    """A string column as its UTF-8 bytes, each row padded to the longest (the padding dropped)."""
    import pyarrow as pa

    column = column.cast(pa.large_string()) if pa.types.is_string(column.type) else column
    _, offsets_buffer, data_buffer = column.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int64)[column.offset : column.offset + n + 1]
    data = np.frombuffer(data_buffer, np.uint8) if data_buffer is not None else np.empty(0, np.uint8)
    sizes = np.diff(offsets)
    lengths = sizes.astype(np.int32) if valid is None else np.where(valid, sizes, -1).astype(np.int32)
    widest = int(sizes.max()) if n else 0
    nulls = None if valid is None else np.repeat(valid[:, None], widest, axis=1)
    if n and (sizes == widest).all():  # one length: the bytes are the matrix already
        return _Slot(lengths, data[offsets[0] : offsets[0] + n * widest].reshape(n, widest), nulls)
    filled = np.arange(widest) < sizes[:, None]
    block = np.zeros((n, widest), np.uint8)
    block[filled] = data[offsets[0] : offsets[-1]]
    # Arrow lets a NULL slot hold bytes: they are laid out, then dropped with the NULL.
    return _Slot(lengths, block, filled if nulls is None else filled & nulls)
