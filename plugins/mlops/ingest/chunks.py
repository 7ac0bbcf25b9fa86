"""The chunk validator of ingest: read a local file in chunks, parse it to the configured
types, validate every row (row rules, duplicates, the Great Expectations suite on a sample)
and stage the kept rows to Parquet. validate_file is the entry point; mlops.ingest.pipeline
calls it between the raw copy and the load.

The row policy (what is dropped, nulled or quarantines the file) is in mlops.ingest.validation.
Only the standard library is imported at module level (the ingest DAG file imports
mlops.ingest.pipeline, which imports this module, while it is parsed).
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import time
import zlib
from pathlib import Path

from mlops.config import get_config

log = logging.getLogger(__name__)


def _compression(path: Path) -> str | None:
    """gzip by content (magic bytes), whatever the key's extension says."""
    with open(path, "rb") as probe:
        magic = probe.read(2)
    return "gzip" if magic == b"\x1f\x8b" else None


def _coerce(chunk, dataset, parse_errors: dict, row_faults: dict, plausible: tuple):
    """Parse each configured column to its type. Unparseable values become null and are counted.
    Time faults (ambiguous or non-existent local time, implausible time) are added to
    `row_faults` as {rule: {"count", "examples", "mask"}} (the mask is this chunk's).

    Returns (typed chunk, unparseable-row mask, the time column as warehouse text).
    """
    import pandas as pd

    unparseable = pd.Series(False, index=chunk.index)
    time_text = None
    for name, spec in dataset.columns.items():
        if name not in chunk.columns:
            continue
        raw = chunk[name]
        if spec.type in ("float", "int"):
            if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
                typed = raw.astype("float64")
            else:
                text = raw.astype("string").str.strip()
                typed = pd.to_numeric(text, errors="coerce").astype("float64")
            bad = raw.notna() & typed.isna()
            if spec.type == "int":
                fractional = typed.notna() & (typed % 1 != 0)
                bad |= fractional
                typed = typed.mask(fractional)
        elif spec.type == "datetime":
            text = raw.astype("string")
            parsed, zone_fault, converted = _parse_time(text, dataset)
            bad = raw.notna() & parsed.isna() & ~zone_fault
            _note_fault(row_faults, ZONE_RULE, zone_fault, raw)
            typed = parsed
            if name == dataset.time_column:
                too_late, too_early = _implausible(parsed, plausible)
                _note_fault(row_faults, FUTURE_RULE, too_late, raw)
                _note_fault(row_faults, EARLY_RULE, too_early, raw)
                time_text = _timestamp_text(text, parsed, dataset.time_format, reuse_text=not converted)
        else:
            typed = raw.astype("string")  # read as str: kept verbatim ('02980' stays '02980')
            bad = pd.Series(False, index=chunk.index)
        if bad.any():
            entry = parse_errors.setdefault(name, {"column": name, "type": spec.type, "count": 0, "examples": []})
            entry["count"] += int(bad.sum())
            for value in raw[bad].astype(str).unique()[:10]:
                if len(entry["examples"]) < 10 and value not in entry["examples"]:
                    entry["examples"].append(value)
            unparseable |= bad
        chunk[name] = typed
    return chunk, unparseable, time_text


FIELD_COUNT_RULE = "field count differs from the header"
ZONE_RULE = "local time ambiguous or non-existent (daylight saving)"
FUTURE_RULE = "timestamp later than ingest time + validation.future_tolerance_hours"
EARLY_RULE = "timestamp earlier than validation.earliest_timestamp"


def _note_fault(row_faults: dict, rule: str, mask, raw) -> None:
    """Add a chunk's rows breaking `rule` (a boolean Series) to `row_faults`."""
    entry = row_faults.setdefault(rule, {"count": 0, "examples": [], "mask": None})
    entry["mask"] = mask if entry["mask"] is None else entry["mask"] | mask
    if not mask.any():
        return
    entry["count"] += int(mask.sum())
    for value in raw[mask].astype(str).unique()[:EXAMPLE_VALUES]:
        if len(entry["examples"]) < EXAMPLE_VALUES and value not in entry["examples"]:
            entry["examples"].append(value)


EXAMPLE_VALUES = 10


def _parse_time(text, dataset):
    """Times as naive UTC datetimes: (parsed, zone-fault mask, converted?).

    A format with %z honours each row's offset (rows with different offsets are fine: each is
    converted). Naive times are in dataset.time_zone; with a zone other than UTC they are
    localised with its daylight-saving rules, and a local time that is ambiguous (the repeated
    hour) or non-existent (the skipped hour) is a zone fault, not a guess.
    """
    import pandas as pd

    no_fault = pd.Series(False, index=text.index)
    if "%z" in dataset.time_format or "%Z" in dataset.time_format:
        parsed = pd.to_datetime(text, format=dataset.time_format, errors="coerce", utc=True)
        return parsed.dt.tz_localize(None), no_fault, True
    parsed = pd.to_datetime(text, format=dataset.time_format, errors="coerce")
    if dataset.time_zone == "UTC":
        return parsed, no_fault, False
    local = parsed.dt.tz_localize(dataset.time_zone, ambiguous="NaT", nonexistent="NaT")
    fault = parsed.notna() & local.isna()
    return local.dt.tz_convert("UTC").dt.tz_localize(None), fault, True


def plausible_range(validation) -> tuple:
    """(earliest, latest) plausible naive-UTC timestamps at this moment (earliest may be None)."""
    import pandas as pd

    latest = pd.Timestamp.now(tz="UTC").tz_localize(None) + pd.Timedelta(hours=validation.future_tolerance_hours)
    earliest = pd.Timestamp(validation.earliest_timestamp) if validation.earliest_timestamp else None
    return earliest, latest


def _implausible(parsed, plausible: tuple):
    earliest, latest = plausible
    too_late = parsed.notna() & (parsed > latest)
    too_early = parsed.notna() & (parsed < earliest) if earliest is not None else parsed.notna() & False
    return too_late, too_early


def _timestamp_text(text, parsed, time_format: str, reuse_text: bool = True):
    """Timestamps as warehouse text. Strings that parsed with the warehouse format and have its
    length (19) are already canonical and are reused: formatting a million dates costs a second."""
    from mlops.io.warehouse import TIMESTAMP_FORMAT

    out = text.copy()
    redo = parsed.notna()
    if time_format == TIMESTAMP_FORMAT and reuse_text:
        redo &= text.str.len() != len("2000-01-01 00:00:00")
    if redo.any():
        out[redo] = parsed[redo].dt.strftime(TIMESTAMP_FORMAT)
    out[parsed.isna()] = None
    return out.astype("string")


def _stage_frame(frame, dataset):
    """The kept rows in warehouse shape: timestamp text, floats, nullable ints, strings."""
    out = frame[list(dataset.columns)].copy()
    for name, spec in dataset.columns.items():
        if spec.type == "datetime":
            out[name] = frame[f"__text__{name}"]
        elif spec.type == "int":
            out[name] = out[name].astype("Int64")
        elif spec.type == "float":
            out[name] = out[name].astype("float64")
        else:
            out[name] = out[name].astype("string")
    return out


def validate_file(path: Path, staged: Path, object_key: str, timings: dict | None = None, sink=None) -> dict:
    """Read, parse and validate a local copy of an object; stage kept rows as Parquet.

    Returns the validation result (JSON-able). result["status"] is "passed" or "quarantined".
    `timings` (if given) receives seconds spent parsing (CSV + types), validating (GX, row rules,
    duplicates) and staging (Parquet).

    `sink` (optional, e.g. mlops.ingest.load's LoadDuringValidation) receives the kept rows
    instead of the staging file: `sink.write(table)` per chunk (a pyarrow Table of the staged
    schema). The field-count pass then runs beside the chunk reading instead of before it. When
    rows it received would not stay (a chunk overlaps an earlier one in time, some timestamps
    carry conflicting values, or a record has the wrong field count or the header is not the
    configured one), validation calls `sink.discard()` and starts over
    without it, staging to the file. So on return either the sink holds exactly the kept rows,
    or it was discarded and `staged` holds them.
    """
    timings = timings if timings is not None else {}
    for phase in ("parse", "validate", "stage"):
        timings.setdefault(phase, 0.0)
    try:
        return _validate_pass(path, staged, object_key, timings, rows_across_chunks=False, sink=sink)
    except _ChunksOverlapInTime:
        # Rows of an earlier chunk may repeat in this one; that needs every row's hash, from the start.
        log.info("%s: chunks overlap in time; validating again with every row's hash", object_key)
        rows_across_chunks = True
    except _SinkRowsWouldChange:
        log.info(
            "%s: rows read would change (conflicting timestamps or misshapen records);"
            " validating again into a staging file",
            object_key,
        )
        rows_across_chunks = False
    staged.unlink(missing_ok=True)
    if sink is not None:
        sink.discard()
    return _validate_pass(path, staged, object_key, timings, rows_across_chunks=rows_across_chunks)


class _ChunksOverlapInTime(Exception):
    pass


class _SinkRowsWouldChange(Exception):
    """Rows handed to the sink must leave again (timestamps with conflicting values, or records
    whose field count the pass did not wait for)."""


def _validate_pass(
    path: Path, staged: Path, object_key: str, timings: dict, rows_across_chunks: bool, sink=None
) -> dict:
    """One pass of validate_file. A file in time order (or in reverse order) has no timestamp in
    two chunks, so duplicates are looked for only within each chunk. The first chunk that
    overlaps an earlier one in time raises _ChunksOverlapInTime unless `rows_across_chunks`,
    which keeps every row's timestamp and hash to compare later chunks with (16 bytes a row).
    """
    return _ChunkValidator(path, staged, object_key, timings, rows_across_chunks, sink).run()


class _ChunkValidator:
    """The state one pass of validate_file shares across chunks, and one method per phase.

    Per chunk: read and parse (_coerce), exact duplicates (_dedupe), every rule's mask and the
    GX sample (_flag), set_null then the drop rules (_apply_rules), Parquet staging (_stage).
    After the last chunk: GX on the sample, timestamps with conflicting values, the verdict.
    """

    def __init__(self, path: Path, staged: Path, object_key: str, timings: dict, rows_across_chunks: bool, sink=None):
        import numpy as np

        from mlops.ingest import validation

        cfg = get_config()
        self.path, self.staged, self.timings, self.sink = path, staged, timings, sink
        self.rows_across_chunks = rows_across_chunks
        self.dataset, self.policy = cfg.dataset, cfg.validation
        suite_file = validation.suite_path(self.policy)
        suite = validation.load_suite(suite_file)
        self.runner = validation.runner_for(str(suite_file))
        self.rules = validation.row_rules(suite)
        self.result = _empty_result(object_key, suite["name"], self.policy)
        self.totals: dict[str, dict] = {}
        self.parse_errors: dict[str, dict] = {}
        self.row_faults: dict[str, dict] = {}
        self.dropped: dict[str, int] = {}
        self.nulled: dict[str, int] = {}
        # Without rows_across_chunks: each earlier chunk's first and last timestamp (int64 ns).
        self.time_ranges: list[tuple] = []
        # With rows_across_chunks: each earlier chunk's sorted timestamps and their rows' hashes.
        self.seen: list[tuple] = []
        self.policy_counts: dict[str, int] = {}
        self.gx_rows: list = []
        self.gx_budget = {
            "flagged": GX_MAX_FLAGGED_ROWS,
            "clean": GX_CLEAN_SAMPLE_ROWS,
            "rng": np.random.default_rng(0),
        }
        self.conflicting_ts: set[int] = set()
        self.writer = self.schema = None
        self.staged_rows = 0
        self.shape = self.reader = self.shape_pass = None

    def run(self) -> dict:
        """Validate every chunk, stage the kept rows; the validation result with its verdict."""
        if self.sink is not None:
            self._open_without_waiting_for_shape()
        else:
            self._open()
        try:
            self._read_chunks()
        except _ChunksOverlapInTime:
            with contextlib.suppress(_SinkRowsWouldChange):
                self._confirm_shape()  # the next pass checks the shape again: this one is done first
            raise
        except Exception:
            self._confirm_shape()  # a misshapen file explains it: start over, shape first
            raise
        finally:
            if self.writer is not None:
                self.writer.close()
        self._confirm_shape()
        self._finish()
        return _decide(self.result, self.policy)

    def _open_without_waiting_for_shape(self) -> None:
        """With a sink: the field-count pass runs in a thread while the chunks are read as if
        every record were well formed, so the sink's load starts one pass earlier. Most files
        are; _confirm_shape checks the guess after the last chunk."""
        import concurrent.futures

        from mlops.ingest import csv_shape

        compression = _compression(self.path)
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self.shape_pass = pool.submit(csv_shape.check_shape, self.path, compression, self.staged.parent)
        pool.shutdown(wait=False)  # the pass runs on; _confirm_shape waits for it
        self.reader = self._guarded(lambda: _csv_reader(self.path, compression, self.dataset, self.policy))
        self.plausible = plausible_range(self.policy)

    def _confirm_shape(self) -> None:
        """After a pass that did not wait for the field counts: raises _SinkRowsWouldChange
        unless every record had the header's field count and the header is the configured one
        (else the pass starts over without the sink, shape first, and reports it as usual)."""
        if self.shape_pass is None:
            return
        t0 = time.perf_counter()
        try:
            shape = self.shape_pass.result()
        except Exception as exc:  # noqa: BLE001 - the pass without the sink reports it
            raise _SinkRowsWouldChange from exc
        finally:
            self.timings["shape"] = self.timings.get("shape", 0.0) + time.perf_counter() - t0
            self.shape_pass = None
        if shape is None or shape.bad_count or _header_problem(shape.header, list(self.dataset.columns)):
            raise _SinkRowsWouldChange
        self.shape = shape

    def _drop(self, mask, rule: str) -> None:
        count = int(mask.sum())
        if count:
            self.dropped[rule] = self.dropped.get(rule, 0) + count

    def _guarded(self, step):
        """Run a read step; bad input becomes a structural error (and None), other errors propagate."""
        try:
            return step()
        except StopIteration:
            return None
        except Exception as exc:
            problem = _structural_problem(exc)
            if problem is None:
                raise
        self.result["structural_errors"].append(problem)
        return None

    def _open(self) -> None:
        """Check the file's shape (field counts), open the chunked reader, count bad-shape rows."""
        import numpy as np

        from mlops.ingest import csv_shape

        t0 = time.perf_counter()
        self.shape = self._guarded(
            lambda: csv_shape.check_shape(self.path, _compression(self.path), self.staged.parent)
        )
        self.timings["shape"] = self.timings.get("shape", 0.0) + time.perf_counter() - t0
        self.reader = _open_reader(self.path, self.shape, self.dataset, self.policy, self.result, self._guarded)
        shape = self.shape
        if shape is not None and shape.bad_count:
            self.row_faults[FIELD_COUNT_RULE] = {"count": shape.bad_count, "examples": shape.examples, "mask": None}
            self.result["rows_in"] += shape.bad_count
            self._drop(np.ones(shape.bad_count, dtype=bool), FIELD_COUNT_RULE)
        self.plausible = plausible_range(self.policy)

    def _read_chunks(self) -> None:
        # A quarter-size first chunk: a sink's load starts after it, so it starts sooner.
        size = max(1, self.policy.chunk_rows // 4)
        while self.reader is not None:
            t0 = time.perf_counter()
            chunk = self._guarded(lambda size=size: self.reader.get_chunk(size))
            size = self.policy.chunk_rows
            if chunk is None:
                self.timings["parse"] += time.perf_counter() - t0
                return
            self.result["rows_in"] += len(chunk)
            chunk, unparseable, time_text = _coerce(
                chunk, self.dataset, self.parse_errors, self.row_faults, self.plausible
            )
            self.timings["parse"] += time.perf_counter() - t0
            t1 = time.perf_counter()
            chunk, keep, ts = self._validate_chunk(chunk, unparseable)
            self.timings["validate"] += time.perf_counter() - t1
            t2 = time.perf_counter()
            self._stage(chunk, keep, ts, time_text)
            self.timings["stage"] += time.perf_counter() - t2

    def _validate_chunk(self, chunk, unparseable):
        """(chunk without exact duplicates, rows to keep, their int64-ns timestamps)."""
        import numpy as np

        ts, has_ts, row_hash = self._timestamps(chunk)
        # Exact duplicate rows (same timestamp, same values) collapse to one, silently counted.
        exact_dup = _duplicate_rows(chunk, ts, has_ts, row_hash, self.seen, self.conflicting_ts)
        self.result["rows_duplicate"] += int(exact_dup.sum())
        fresh_rows = None
        if exact_dup.any():  # most chunks have none: no copy then
            fresh_rows = ~exact_dup
            chunk, unparseable = chunk[fresh_rows], unparseable[fresh_rows]
            ts, has_ts = ts[fresh_rows], has_ts[fresh_rows]
            row_hash = row_hash[fresh_rows] if row_hash is not None else None
        masks = self._flag(chunk, unparseable, ts)
        keep = self._apply_rules(chunk, unparseable, masks, fresh_rows)
        if self.rows_across_chunks and has_ts.any():
            order = np.argsort(ts[has_ts], kind="stable")
            self.seen.append((ts[has_ts][order], row_hash[has_ts][order]))
        return chunk, keep, ts

    def _timestamps(self, chunk):
        """(int64-ns timestamps, has-timestamp mask, row hashes or None); raises
        _ChunksOverlapInTime when hashes are not kept and this chunk overlaps an earlier one."""
        column = chunk[self.dataset.time_column]
        ts = column.to_numpy(dtype="datetime64[ns]").astype("int64")
        has_ts = column.notna().to_numpy()
        if not self.rows_across_chunks and has_ts.any():
            span = (ts[has_ts].min(), ts[has_ts].max())
            if any(_overlap(span, earlier) for earlier in self.time_ranges):
                raise _ChunksOverlapInTime
            self.time_ranges.append(span)
        row_hash = _row_hashes(chunk) if self.rows_across_chunks else None
        return ts, has_ts, row_hash

    def _flag(self, chunk, unparseable, ts) -> dict:
        """Every rule on every row, vectorised (the masks read the suite's kwargs): {rule: mask}.
        GX sees every flagged row and a sample of the clean ones (see _gx_subset)."""
        import numpy as np

        from mlops.ingest import validation

        masks = {validation.rule_name(r): validation.violation_mask(chunk, r) for r in self.rules}
        flagged = unparseable.to_numpy().copy()
        if self.conflicting_ts:
            flagged |= np.isin(ts, np.fromiter(self.conflicting_ts, dtype="int64"))
        for name, mask in masks.items():
            self.policy_counts[name] = self.policy_counts.get(name, 0) + int(mask.sum())
            flagged = flagged | mask
        self.gx_rows.append(_gx_subset(chunk, flagged, self.gx_budget))
        return masks

    def _apply_rules(self, chunk, unparseable, masks: dict, fresh_rows):
        """The rows to keep: set_null first (the row stays), then the drop rules on what remains."""
        from mlops.ingest import validation

        keep = ~unparseable.to_numpy()
        self._drop(unparseable.to_numpy(), "unparseable value")
        for rule, fault in self.row_faults.items():
            if fault["mask"] is not None:
                mask = fault["mask"].to_numpy() if fresh_rows is None else fault["mask"].to_numpy()[fresh_rows]
                self._drop(mask & keep, rule)
                keep &= ~mask
                fault["mask"] = None
        nulled_columns = self._set_nulls(chunk, masks)
        for rule in self.rules:
            if rule["meta"]["on_failure"] != "set_null":
                mask = masks[validation.rule_name(rule)]
                if rule["kwargs"]["column"] in nulled_columns:  # values changed by set_null
                    mask = validation.violation_mask(chunk, rule)
                self._drop(mask & keep, validation.rule_name(rule))
                keep = keep & ~mask
        return keep

    def _set_nulls(self, chunk, masks: dict) -> set:
        """Null the values set_null rules flag (in place); the columns changed."""
        import numpy as np

        from mlops.ingest import validation

        nulled_columns = set()
        for rule in self.rules:
            name = validation.rule_name(rule)
            if rule["meta"]["on_failure"] == "set_null" and masks[name].any():
                self.nulled[name] = self.nulled.get(name, 0) + int(masks[name].sum())
                chunk.loc[masks[name], rule["kwargs"]["column"]] = np.nan
                nulled_columns.add(rule["kwargs"]["column"])
        return nulled_columns

    def _stage(self, chunk, keep, ts, time_text) -> None:
        """Hand the kept rows to the sink, or append them to the staging Parquet file."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        kept = chunk[keep].copy()
        kept[f"__text__{self.dataset.time_column}"] = time_text.loc[kept.index]
        frame = _stage_frame(kept, self.dataset)
        frame["__ts__"] = ts[keep]
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self.schema is None:
            self.schema = table.schema
        table = table.cast(self.schema)
        if self.sink is not None:
            self.sink.write(table)  # loaded while validation goes on: no staging file
        else:
            if self.writer is None:
                self.writer = pq.ParquetWriter(self.staged, self.schema)
            self.writer.write_table(table)
        self.staged_rows += len(frame)
        del table, frame
        pa.default_memory_pool().release_unused()  # mimalloc keeps freed chunks otherwise

    def _finish(self) -> None:
        """GX on the sample, conflicting timestamps, then the counts into the result."""
        import pandas as pd

        if self.conflicting_ts and self.staged_rows and self.sink is not None:
            raise _SinkRowsWouldChange
        if self.gx_rows:
            t1 = time.perf_counter()
            _validate_with_gx(
                self.result, self.totals, self.runner, pd.concat(self.gx_rows), self.policy_counts, self.gx_budget
            )
            self.timings["validate"] += time.perf_counter() - t1
        if self.conflicting_ts and self.staged_rows:
            # Rows sharing a timestamp with different values: all of them go (rewrite the staging file).
            self.staged_rows, conflicts_dropped = _drop_timestamps(self.staged, self.conflicting_ts)
            if conflicts_dropped:
                rule = "expect_column_values_to_be_unique(" + self.dataset.time_column + ") conflicting values"
                self.dropped[rule] = conflicts_dropped
        result, shape = self.result, self.shape
        if self.reader is not None and shape is not None and result["rows_in"] != shape.data_rows:
            result["structural_errors"].append(
                f"{shape.data_rows} records counted but {result['rows_in']} rows read: quoting the reader"
                " and the field count disagree on; the batch is held back"
            )
        result["row_faults"] = {
            rule: {"count": f["count"], "examples": f["examples"]} for rule, f in self.row_faults.items() if f["count"]
        }
        result["expectations"] = list(self.totals.values())
        result["parse_errors"] = list(self.parse_errors.values())
        result["dropped_by_rule"] = self.dropped
        result["nulled_by_rule"] = self.nulled
        result["rows_kept"] = self.staged_rows
        result["rows_dropped"] = sum(self.dropped.values())
        considered = max(result["rows_in"] - result["rows_duplicate"], 1)
        result["bad_row_fraction"] = round(result["rows_dropped"] / considered, 6)


def _empty_result(object_key: str, suite_name: str, policy) -> dict:
    """A validation result before any row is read."""
    return {
        "object_key": object_key,
        "suite": suite_name,
        "great_expectations_version": _gx_version(),
        "rows_in": 0,
        "rows_kept": 0,
        "rows_dropped": 0,
        "rows_duplicate": 0,
        "max_bad_row_fraction": policy.max_bad_row_fraction,
        "structural_errors": [],
        "parse_errors": [],
        "dropped_by_rule": {},
        "nulled_by_rule": {},
        "expectations": [],
    }


def _structural_problem(exc: Exception) -> str | None:
    """What a reader's exception says about bad input, or None when it is not about the input."""
    import pandas as pd

    from mlops.ingest import csv_shape

    if isinstance(exc, csv_shape.ShapeError):
        return str(exc)
    if isinstance(exc, pd.errors.EmptyDataError):
        return "empty file: no header and no data"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text: byte {exc.object[exc.start : exc.start + 1]!r} cannot be decoded"
    if isinstance(exc, (EOFError, gzip.BadGzipFile, zlib.error)):
        return f"corrupt or truncated gzip: {exc}"
    if isinstance(exc, pd.errors.ParserError):
        return f"malformed CSV (wrong delimiter, quoting or field count): {exc}"
    if isinstance(exc, (ValueError, OSError)):  # pandas' other complaints about undecodable input
        return f"unreadable file: {type(exc).__name__}: {exc}"
    return None


def _decide(result: dict, policy) -> dict:
    """Set result's status ("passed" or "quarantined") and reason; returns result."""
    _add_verdict_errors(result, policy)
    dropped = result["dropped_by_rule"]
    if result["structural_errors"]:
        result["status"] = "quarantined"
        result["reason"] = "; ".join(result["structural_errors"])
    elif result["bad_row_fraction"] > policy.max_bad_row_fraction:
        considered = max(result["rows_in"] - result["rows_duplicate"], 1)
        result["status"] = "quarantined"
        worst = ", ".join(f"{k}: {v}" for k, v in sorted(dropped.items(), key=lambda kv: -kv[1]))
        result["reason"] = (
            f"{result['rows_dropped']} of {considered} rows ({result['bad_row_fraction']:.1%}) break row rules, "
            f"above validation.max_bad_row_fraction={policy.max_bad_row_fraction:.1%} ({worst})"
        )
    else:
        result["status"] = "passed"
        result["reason"] = f"dropped {result['rows_dropped']} bad row(s): {dropped}" if result["rows_dropped"] else None
    return result


def _add_verdict_errors(result: dict, policy) -> None:
    """Structural errors found only on the whole file: too few rows, no valid row, a failed
    quarantine expectation (each only when nothing structural was found before)."""
    errors = result["structural_errors"]
    if not errors:
        if result["rows_in"] < policy.min_rows:
            errors.append(f"{result['rows_in']} data row(s) (header only?); at least {policy.min_rows} required")
        elif result["rows_kept"] == 0:
            errors.append("no valid rows: every row broke a rule")
    for exp in result["expectations"]:
        if exp["on_failure"] == "quarantine" and not exp["success"] and not errors:
            errors.append(f"{exp['expectation']} failed: {exp.get('details') or exp.get('observed_value')}")


def _open_reader(path: Path, shape, dataset, policy, result: dict, guarded):
    """A chunked pandas reader of a well-formed file, or None with the structural error noted.

    The declared types decide the dtypes (string and datetime columns are read as text, so
    nothing is guessed), only the configured markers mean missing, and the header was checked
    on the raw file (pandas would rename a duplicated 'Humidity' to 'Humidity.1').
    """

    if shape is None:
        if not result["structural_errors"]:
            result["structural_errors"].append("empty file: no header and no data")
        return None
    problem = _header_problem(shape.header, list(dataset.columns))
    if problem:
        result["structural_errors"].append(problem)
        return None
    compression = None if shape.clean_path else _compression(path)
    return guarded(lambda: _csv_reader(shape.clean_path or path, compression, dataset, policy))


def _csv_reader(source: Path, compression: str | None, dataset, policy):
    """pandas' chunked reader of a CSV file with the data set's columns and missing markers."""
    import pandas as pd

    return pd.read_csv(
        source,
        compression=compression,
        encoding="utf-8",
        encoding_errors="strict",
        chunksize=policy.chunk_rows,
        low_memory=True,
        index_col=False,
        dtype={n: str for n, c in dataset.columns.items() if c.type in ("string", "datetime")},
        keep_default_na=False,
        na_values={n: dataset.missing_values_of(n) for n in dataset.columns},
    )


def _header_problem(header: list[str], expected: list[str]) -> str | None:
    seen: set[str] = set()
    repeated = sorted({name for name in header if name in seen or seen.add(name)})
    problems = [_column_problem(header, expected)] if set(header) != set(expected) else []
    if repeated:
        problems.append(f"duplicated column name(s) in the header: {bounded(repeated)}")
    return "; ".join(problems) or None


def bounded(names: list, shown: int = 5) -> str:
    """A list for a reason or a log line: the first `shown` items and how many more."""
    names = list(names)
    head = ", ".join(repr(str(n)[:60]) for n in names[:shown])
    return f"[{head}{f', ... and {len(names) - shown} more' if len(names) > shown else ''}]"


def _overlap(span: tuple, other: tuple) -> bool:
    """Whether two (first, last) timestamp ranges share a point."""
    return span[0] <= other[1] and other[0] <= span[1]


def _row_hashes(frame):
    """One 64-bit hash per row over every column, the timestamp included: equal hashes = equal rows."""
    import pandas as pd

    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


def _duplicate_rows(chunk, ts, has_ts, row_hash, seen: list[tuple], conflicting_ts: set[int]):
    """Rows that exactly repeat an earlier row of the file (same timestamp, same values): a mask.
    Timestamps shared by rows with different values are added to `conflicting_ts`.

    Only rows whose timestamp occurs more than once can be either, so within the chunk only
    those are hashed (`row_hash`, every row's hash, is given only when `seen` is kept: each
    earlier chunk's sorted timestamps and row hashes; earlier chunks outside this chunk's time
    range are skipped).
    """
    import numpy as np
    import pandas as pd

    exact_dup = np.zeros(len(ts), dtype=bool)
    dated = np.flatnonzero(has_ts)
    if not len(dated):
        return exact_dup
    times = ts[dated]
    shared = dated[:0]  # rows whose timestamp repeats within this chunk
    steps = np.diff(times)
    if not ((steps > 0).all() or (steps < 0).all()):  # not strictly in (reverse) time order
        shared = dated[pd.Series(times).duplicated(keep=False).to_numpy()]
        shared_hash = row_hash[shared] if row_hash is not None else _row_hashes(chunk.iloc[shared])
        exact_dup[shared] = pd.Series(shared_hash).duplicated().to_numpy()
    span = (times.min(), times.max())
    for seen_ts, seen_hash in seen:
        if not _overlap(span, (seen_ts[0], seen_ts[-1])):
            continue
        pos = np.minimum(np.searchsorted(seen_ts, ts), len(seen_ts) - 1)
        ts_seen = (seen_ts[pos] == ts) & has_ts
        exact_dup |= ts_seen & (seen_hash[pos] == row_hash)
        conflicting_ts.update(ts[ts_seen & (seen_hash[pos] != row_hash)].tolist())
    fresh_shared = shared[~exact_dup[shared]]
    clash = pd.Series(ts[fresh_shared]).duplicated(keep=False).to_numpy()
    conflicting_ts.update(ts[fresh_shared][clash].tolist())
    return exact_dup


# GX validates every row that breaks a rule (up to this many) plus a sample of the clean rows.
GX_MAX_FLAGGED_ROWS = 50_000
GX_CLEAN_SAMPLE_ROWS = 10_000


def _gx_subset(chunk, flagged, budget: dict):
    """The rows of a chunk that GX will see: the flagged ones and a random share of the clean.

    Running the whole suite on every row costs ~4x the CSV parse (GX builds a metric graph per
    run and copies frames per expectation). For column-map expectations a run on the flagged
    rows plus clean rows gives the same verdicts, unexpected counts and examples as a run on the
    whole batch, because every unexpected row is in it; the clean sample lets GX check that
    the vectorised masks missed nothing (_validate_with_gx compares the counts).
    """
    import numpy as np

    bad = np.flatnonzero(flagged)[: budget["flagged"]]
    budget["flagged"] -= len(bad)
    budget.setdefault("flagged_truncated", False)
    if len(bad) < int(flagged.sum()):
        budget["flagged_truncated"] = True
    clean = np.flatnonzero(~flagged)
    take = min(len(clean), budget["clean"], max(1000, len(chunk) // 20))
    sample = budget["rng"].choice(clean, size=take, replace=False) if take else clean[:0]
    budget["clean"] = max(budget["clean"] - take, 0)
    budget["rows"] = budget.get("rows", 0) + len(chunk)
    return chunk.iloc[np.sort(np.concatenate([bad, sample]))]


def _validate_with_gx(result: dict, totals: dict, runner, subset, policy_counts: dict, budget: dict) -> None:
    """One GX run on the subset; its unexpected counts must equal the row policy's."""
    from mlops.ingest import validation

    validation.merge_results(totals, runner.run(subset))
    result["gx_rows_validated"] = len(subset)
    result["gx_note"] = (
        f"Great Expectations validated {len(subset)} of {budget.get('rows', 0)} rows: every row breaking a rule"
        f"{' (first ' + str(GX_MAX_FLAGGED_ROWS) + ')' if budget.get('flagged_truncated') else ''}"
        " and a random sample of the others; counts of unexpected values are over the whole batch."
    )
    for item in totals.values():
        if item.get("column") is None or item["expectation"] == "expect_column_values_to_be_unique":
            continue
        name = f"{item['expectation']}({item['column']})"
        item["element_count"] = budget.get("rows", item.get("element_count"))
        if name in policy_counts and not budget.get("flagged_truncated"):
            gx_count, ours = item.get("unexpected_count") or 0, policy_counts[name]
            if gx_count != ours:
                result["structural_errors"].append(
                    f"validation disagreement on {name}: Great Expectations found {gx_count} unexpected"
                    f" value(s), the row policy {ours}; the batch is held back until this is understood"
                )
            item["unexpected_count"] = ours


def _drop_timestamps(staged: Path, timestamps: set[int]) -> tuple[int, int]:
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(staged)  # only reached for batches with conflicting duplicates
    doomed = pc.is_in(table["__ts__"], value_set=__import__("pyarrow").array(np.array(sorted(timestamps))))
    kept = table.filter(pc.invert(doomed))
    pq.write_table(kept, staged)
    return kept.num_rows, table.num_rows - kept.num_rows


def _column_problem(header: list[str], expected: list[str]) -> str:
    missing = [c for c in expected if c not in header]
    extra = [c for c in header if c not in expected]
    if len(header) == 1 and any(sep in header[0] for sep in (";", "\t", "|")):
        return (
            f"wrong delimiter: the header is one column {header[0][:80]!r};"
            f" expected comma-separated {bounded(expected, 10)}"
        )
    parts = []
    if missing:
        parts.append(f"missing column(s) {bounded(missing)}")
    if extra:
        parts.append(f"unexpected column(s) {bounded(extra)}")
    if missing and extra:
        parts.append("(renamed?)")
    return "columns do not match the data set: " + " ".join(parts)


def _gx_version() -> str:
    import great_expectations

    return great_expectations.__version__
