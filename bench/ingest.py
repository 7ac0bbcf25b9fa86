"""Benchmark: ingest of one large batch shaped like the example data, side by side in one run.

    .venv/bin/python bench/ingest.py [--rows 1000000]

The script starts its own SeaweedFS (scripts/stack's start_object_store) on free loopback
ports with a temporary state folder and a SQLite warehouse file in it; a running stack is
never touched, and everything started is stopped at the end.

1. Generates a CSV of --rows hourly rows cut from the Turku data (fresh timestamps), with 0.1%
   of the rows broken (text in a numeric column, out-of-range humidity) and the example's
   share of pressure zeros (nulled by the row policy).
2. CSV parse: pandas.read_csv of the whole file, the cost any loader pays.
3. mlops.ingest.pipeline.validate_file on the same file, chunked as in production, its time split into
   parse (CSV chunks + types), validate (row rules and duplicate checks on every row, the Great
   Expectations suite on the flagged rows and a sample) and stage (kept rows to Parquet).
   Steps 2 and 3 run side by side --repeat times (default 5), interleaved; medians are reported.
4. End to end: upload to landing/, then mlops.ingest.pipeline.process_object(key), the function the
   DAG's ingest_files task calls: download + checksum, verified raw copy, validation, one
   transaction into the warehouse, reports, landing removed. Airflow's own task overhead is
   not included (it does not depend on the file).

Prints validation time / CSV parse time (goal <= 1) and end-to-end rows per second.

    .venv/bin/python bench/ingest.py --memory 1000000,10000000

measures instead the peak resident memory of an ingest task for each size: one fresh
subprocess per size (`--peak-only`: generate, upload, process_object, print the peak of
resource.getrusage and the rows per second), printed side by side with the load average.

    .venv/bin/python bench/ingest.py --compare-load [--rows 1000000] [--repeat 3] [--paths ...]

times process_object end to end on the embedded PostgreSQL (its server binaries, started by
this script on a free port beside its own SeaweedFS) with the load paths, side by side on the
same file: `copy-during-validation` (the default: mlops.ingest.load.LoadDuringValidation, the
COPY of each chunk while the next is validated, in PostgreSQL's binary format),
`csv-copy-during-validation` (the same in CSV, as before mlops.io.pg_binary), `copy`
(ingest.load_during_validation false: warehouse.bulk_insert's COPY of the staged file after
validation) and `executemany` (the
row-by-row INSERT ... ON CONFLICT DO NOTHING that COPY replaced, psycopg's executemany, after
validation, kept for the comparison; --paths leaves it out if not named). Each run is a fresh
process on a freshly created warehouse database, the paths interleaved --repeat times; it prints
each path's median seconds, rows/s, peak RSS and the load average around the runs. Each process
first ingests a 100-row file of other hours end to end, untimed (imports, the GX context and
the clients' set-up: a per-process constant).
--memory with --warehouse postgres measures the peak RSS per size on PostgreSQL instead.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(ROOT / "scripts"))

import stack as stack_module  # noqa: E402

TURKU = ROOT / "include" / "data" / "port_of_turku_weather.csv.gz"
# --compare-load's paths, the project's default first (see the module docstring).
LOAD_PATHS = ["copy-during-validation", "csv-copy-during-validation", "copy", "executemany"]


def make_file(path: Path, rows: int, seed: int = 7, end: str = "2025-01-01") -> None:
    """`rows` distinct hours shaped like the example, up to `end`, written piece by piece."""
    base = pd.read_csv(TURKU, dtype=str).drop_duplicates("Timestamp").reset_index(drop=True)
    rng = random.Random(seed)
    # Every row plausible (validation.earliest_timestamp 1900, nothing in the future): hourly
    # up to 1M rows (114 years), minutely beyond.
    freq = pd.Timedelta(hours=1) if rows <= 1_000_000 else pd.Timedelta(minutes=1)
    start = pd.Timestamp(end) - rows * freq
    written = 0
    with open(path, "w") as out:
        while written < rows:
            n = min(len(base), rows - written)
            piece = base.head(n).copy()
            piece["Timestamp"] = pd.date_range(start + written * freq, periods=n, freq=freq).strftime(
                "%Y-%m-%d %H:%M:%S"
            )
            for i in rng.sample(range(n), max(1, n // 2000)):
                piece.loc[i, "Temperature_C"] = "n/a"
            for i in rng.sample(range(n), max(1, n // 2000)):
                piece.loc[i, "Humidity"] = "7.5"
            piece.to_csv(out, index=False, header=written == 0)
            written += n


def arguments() -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="side-by-side repetitions (medians are reported)")
    parser.add_argument(
        "--shuffled",
        action="store_true",
        help="rows in random order, so chunks overlap in time (the duplicate check then hashes every row, in a second pass)",
    )
    parser.add_argument("--memory", help="comma-separated row counts: peak RSS of process_object per size")
    parser.add_argument("--compare-load", action="store_true", help="COPY vs executemany on PostgreSQL (see above)")
    parser.add_argument("--warehouse", choices=["sqlite", "postgres"], default="sqlite", help="for --memory")
    parser.add_argument("--peak-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--paths", default=",".join(LOAD_PATHS), help="comma-separated load paths for --compare-load")
    parser.add_argument("--load-path", choices=LOAD_PATHS, default="copy", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> int:
    args = arguments()
    if args.compare_load:
        return compare_load(args.rows, args.repeat, args.paths.split(","))
    if args.memory and not args.peak_only:
        return memory_table([int(n) for n in args.memory.split(",")], args.warehouse)
    if args.peak_only and args.data:
        return timed_process_object(args.data, args.rows, args.load_path)

    for name in [n for n in os.environ if n.startswith("MLOPS__")]:
        del os.environ[name]  # the shipped configuration
    state = Path(tempfile.mkdtemp(prefix="mlops-bench-ingest-"))
    settings = stack_module.Settings.from_env(state)
    settings.warehouse = "sqlite"  # the benchmark measures ingest into a SQLite file
    settings.s3_port, settings.weed_base_port = stack_module.free_port(), stack_module.free_weed_base()
    os.environ.update(settings.connection_env())

    from mlops.config import get_config
    from mlops.ingest import pipeline as ingest

    storage = get_config().storage
    data = state / "batch.csv"
    t0 = time.perf_counter()
    make_file(data, args.rows)
    if args.shuffled:
        pd.read_csv(data, dtype=str).sample(frac=1, random_state=7).to_csv(data, index=False)
    size_mb = data.stat().st_size / 1e6
    order = "shuffled" if args.shuffled else "in time order"
    print(f"generated {args.rows:,} rows {order}, {size_mb:.0f} MB in {time.perf_counter() - t0:.1f}s", flush=True)

    if args.peak_only:
        return peak_only(settings, data, args.rows)

    result, csv_parse, validate_total, timings = side_by_side(ingest, data, state, args.repeat)
    upload, end_to_end, summary = end_to_end_run(ingest, settings, state, data, storage)
    figures = {
        "rows": args.rows,
        "file_mb": round(size_mb, 1),
        "rows_kept": result["rows_kept"],
        "rows_dropped": result["rows_dropped"],
        "nulled": result["nulled_by_rule"],
        "csv_parse_s (pandas.read_csv, whole file)": round(csv_parse, 2),
        "shape_s (field count of every record, csv_shape)": round(timings["shape"], 2),
        "chunked_parse_s (CSV + types)": round(timings["parse"], 2),
        "validate_s (GX suite + row rules + duplicates)": round(timings["validate"], 2),
        "stage_s (Parquet)": round(timings["stage"], 2),
        "validate_file_total_s": round(validate_total, 2),
        "upload_to_landing_s": round(upload, 2),
        "process_object_s": round(end_to_end, 2),
        "new_rows_in_warehouse": summary["new_rows"],
    }
    print(json.dumps(figures, indent=2))
    print(
        f"\nmedians of {args.repeat} side-by-side repetitions:"
        f"\nvalidation / CSV parse (read_csv):        {timings['validate'] / csv_parse:.2f}  (goal <= 1)"
        f"\nvalidation / chunked parse incl. types:   {timings['validate'] / timings['parse']:.2f}"
        f"\nend to end (process_object) rows/second:  {args.rows / end_to_end:,.0f}"
        f"\n  (S3 download + checksum, verified raw copy, validation, one-transaction SQLite load, reports)"
    )
    return 0


def side_by_side(ingest, data: Path, state: Path, repeat: int):
    """validate_file against pandas.read_csv, interleaved `repeat` times: (last result, median
    read_csv seconds, median validate_file seconds, median seconds per validate_file phase)."""
    # Warm-up on a small file: imports and the GX context are a per-process constant.
    ingest.validate_file(ROOT / "tests" / "data" / "bad" / "few_bad_rows.csv", state / "warm.parquet", "warm")

    # Side by side, interleaved, --repeat times; medians, so that one garbage collection or a
    # busy neighbour landing in one side's timing does not decide the ratio.
    runs = []
    for repetition in range(repeat):
        t0 = time.perf_counter()
        whole = pd.read_csv(data)
        csv_parse = time.perf_counter() - t0
        del whole
        timings: dict = {}
        t0 = time.perf_counter()
        result = ingest.validate_file(data, state / "staged.parquet", "bench", timings)
        runs.append({"csv_parse": csv_parse, **timings, "validate_file": time.perf_counter() - t0})
        print(
            f"repetition {repetition + 1}: read_csv {csv_parse:.3f}s, validation {timings['validate']:.3f}s"
            f" (ratio {timings['validate'] / csv_parse:.2f})",
            flush=True,
        )
    median = {name: statistics.median(run[name] for run in runs) for name in runs[0]}
    csv_parse, validate_total = median["csv_parse"], median["validate_file"]
    timings = {phase: median[phase] for phase in ("parse", "validate", "stage", "shape")}

    return result, csv_parse, validate_total, timings


def end_to_end_run(ingest, settings, state: Path, data: Path, storage):
    """Upload to landing/ and process_object it on a fresh SeaweedFS: (upload s, process s, summary)."""
    try:
        print("starting SeaweedFS ...", flush=True)
        stack_module.start_object_store(settings)
        client = ingest._client()
        key = f"{storage.landing_prefix}bench/batch.csv"
        t0 = time.perf_counter()
        client.upload_file(str(data), storage.bucket, key)
        upload = time.perf_counter() - t0
        t0 = time.perf_counter()
        summary = ingest.process_object(key)
        end_to_end = time.perf_counter() - t0
    finally:
        stack_module.stop_process(settings, "seaweedfs")
        shutil.rmtree(state, ignore_errors=True)

    return upload, end_to_end, summary


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_only(settings, data: Path, rows: int) -> int:
    """In a fresh process: upload the file, process_object it, print peak RSS and rows/s (JSON)."""
    from mlops.config import get_config
    from mlops.ingest import pipeline as ingest

    key = f"{get_config().storage.landing_prefix}bench/batch.csv"
    try:
        stack_module.start_object_store(settings)
        ingest._client().upload_file(str(data), get_config().storage.bucket, key)
        before = peak_rss_mb()
        t0 = time.perf_counter()
        summary = ingest.process_object(key)
        seconds = time.perf_counter() - t0
    finally:
        stack_module.stop_process(settings, "seaweedfs")
        shutil.rmtree(settings.state_dir, ignore_errors=True)
    peak = {"rows": rows, "peak_rss_mb_before": round(before, 1), "peak_rss_mb": round(peak_rss_mb(), 1)}
    print("PEAK " + json.dumps({**peak, "new_rows": summary["new_rows"], "rows_per_s": round(rows / seconds)}))
    return 0


def memory_table(sizes: list[int], warehouse: str = "sqlite") -> int:
    """One subprocess per size (a process's peak never goes down); a table with the load average."""
    lines = []
    with postgres_bench() if warehouse == "postgres" else contextlib.nullcontext() as bench:
        for rows in sizes:
            load_before = os.getloadavg()[0]
            if bench is None:
                argv = [sys.executable, __file__, "--rows", str(rows), "--peak-only"]
            else:
                data = bench.state / f"batch-{rows}.csv"
                make_file(data, rows)
                bench.fresh_warehouse()
                argv = [sys.executable, __file__, "--rows", str(rows), "--peak-only", "--data", str(data)]
            out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
            figures = json.loads(next(line for line in out.splitlines() if line.startswith("PEAK "))[5:])
            lines.append({**figures, "load_avg_1min": f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}"})
            print(json.dumps(lines[-1]), flush=True)
    print(f"\nwarehouse: {warehouse}")
    print("\n| rows | peak RSS of process_object (MB) | before it ran (MB) | rows/s | load average |")
    print("| --- | --- | --- | --- | --- |")
    for f in lines:
        print(
            f"| {f['rows']:,} | {f['peak_rss_mb']:.0f} | {f['peak_rss_mb_before']:.0f} | {f['rows_per_s']:,} | {f['load_avg_1min']} |"
        )
    return 0


# ---------------------------------------------------------------- PostgreSQL: COPY vs executemany


@dataclasses.dataclass
class PostgresBench:
    """The benchmark's own PostgreSQL and SeaweedFS (free ports, a temporary state folder)."""

    settings: object
    state: Path

    def fresh_warehouse(self) -> None:
        """Drop and create the warehouse database: every run loads into empty tables."""
        stack_module.create_pg_database(self.settings, stack_module.PG_DATABASES["warehouse"], fresh=True)


@contextlib.contextmanager
def postgres_bench():
    """Start PostgreSQL and SeaweedFS for the block (their connections in os.environ, which the
    children inherit); stop both and remove the state afterwards."""
    for name in [n for n in os.environ if n.startswith("MLOPS__")]:
        del os.environ[name]
    state = Path(tempfile.mkdtemp(prefix="mlops-bench-ingest-pg-"))
    settings = stack_module.Settings.from_env(state)
    settings.warehouse = "postgres"
    settings.pg_port, settings.s3_port = stack_module.free_port(), stack_module.free_port()
    settings.weed_base_port = stack_module.free_weed_base()
    os.environ.update(settings.connection_env())
    try:
        print("starting PostgreSQL and SeaweedFS ...", flush=True)
        stack_module.start_postgres(settings)
        stack_module.start_object_store(settings)
        yield PostgresBench(settings, state)
    finally:
        for name in ("seaweedfs", "postgres"):
            stack_module.stop_process(settings, name)
        shutil.rmtree(state, ignore_errors=True)


def executemany_insert(conn, table: str, rows, conflict_key: str | None = None) -> int:
    """The load path bulk_insert replaced: INSERT ... ON CONFLICT DO NOTHING, psycopg's executemany."""
    from mlops.io.warehouse import quote

    columns = ", ".join(quote(name) for name in rows.schema.names)
    sql = f"INSERT INTO {quote(table)} ({columns}) VALUES ({', '.join(['%s'] * rows.num_columns)})"
    if conflict_key:
        sql += f" ON CONFLICT ({quote(conflict_key)}) DO NOTHING"
    cursor = conn.connection.driver_connection.cursor()
    cursor.executemany(sql, list(zip(*(column.to_pylist() for column in rows.columns), strict=True)))
    return cursor.rowcount


def timed_process_object(data: Path, rows: int, load_path: str) -> int:
    """In a fresh process: upload `data`, process_object it with the chosen load path; print
    PEAK {rows/s, seconds, peak RSS} as JSON."""
    from mlops.config import get_config
    from mlops.ingest import pipeline as ingest
    from mlops.io import warehouse

    if load_path == "executemany":
        warehouse.bulk_insert = executemany_insert
    if load_path.startswith("csv-"):  # COPY in CSV, as before the binary format (stop 21)
        from mlops.io import pg_binary

        def refuse(*_):
            raise pg_binary.NotEncodable("the benchmark's CSV path")

        pg_binary.check_encodable = refuse
    # Untimed: a small file of other hours ingested end to end first. The first object of a
    # process pays the imports, the GX context and the clients' set-up (~4.5 s, a per-task
    # constant that bench/loop.py's freshness figures include), not the rows.
    warm = data.parent / f"warm-{os.getpid()}.csv"
    make_file(warm, 100, end="2025-02-01")
    warm_key = f"{get_config().storage.landing_prefix}bench/warm-{time.time_ns()}.csv"
    ingest._client().upload_file(str(warm), get_config().storage.bucket, warm_key)
    ingest.process_object(warm_key)
    key = f"{get_config().storage.landing_prefix}bench/{load_path}-{time.time_ns()}.csv"
    ingest._client().upload_file(str(data), get_config().storage.bucket, key)
    before = peak_rss_mb()
    t0 = time.perf_counter()
    summary = ingest.process_object(key)
    seconds = time.perf_counter() - t0
    assert summary["status"] == "loaded" and summary["new_rows"] == summary["rows_kept"], summary
    figures = {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds)}
    figures |= {"new_rows": summary["new_rows"], "peak_rss_mb_before": round(before, 1)}
    print("PEAK " + json.dumps({**figures, "peak_rss_mb": round(peak_rss_mb(), 1)}))
    return 0


def compare_load(rows: int, repeat: int, paths: list[str]) -> int:
    """process_object with each load path on the same file, interleaved `repeat` times, each run
    in a fresh process on a fresh warehouse database; medians and the load average."""
    runs: dict[str, list[dict]] = {path: [] for path in paths}
    with postgres_bench() as bench:
        data = bench.state / "batch.csv"
        make_file(data, rows)
        print(f"generated {rows:,} rows in time order ({data.stat().st_size / 1e6:.0f} MB)", flush=True)
        loads = [os.getloadavg()[0]]
        for repetition in range(repeat):
            for path in runs:
                bench.fresh_warehouse()
                argv = [sys.executable, __file__, "--peak-only", "--rows", str(rows), "--data", str(data)]
                env = {
                    **os.environ,
                    "MLOPS__INGEST__LOAD_DURING_VALIDATION": "true" if path.endswith("during-validation") else "false",
                }
                out = subprocess.run([*argv, "--load-path", path], capture_output=True, text=True, check=False, env=env)
                if out.returncode != 0:
                    raise SystemExit(f"{path} run failed:\n{out.stderr[-3000:]}")
                figures = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("PEAK "))[5:])
                runs[path].append(figures)
                loads.append(os.getloadavg()[0])
                print(f"repetition {repetition + 1} {path}: {json.dumps(figures)} load {loads[-1]:.2f}", flush=True)
    print(f"\nprocess_object of {rows:,} ordered rows on the embedded PostgreSQL, median of {repeat} (fresh process")
    print(f"and warehouse each run); 1-min load average during the runs {min(loads):.2f}-{max(loads):.2f}")
    print("| load path | seconds | rows/s | peak RSS (MB) |\n| --- | --- | --- | --- |")
    for path, results in runs.items():
        seconds = statistics.median(r["seconds"] for r in results)
        peak = statistics.median(r["peak_rss_mb"] for r in results)
        print(f"| {path} | {seconds:.2f} | {rows / seconds:,.0f} | {peak:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
