"""Benchmark of batch scoring: end-to-end throughput against raw predict, and peak memory.

    .venv/bin/python bench/scoring.py                       # 1M and 10M rows
    .venv/bin/python bench/scoring.py --sizes 1000000 --model logreg
    .venv/bin/python bench/scoring.py --sizes 100x1000      # 100 batches of 1,000 rows

For each size N it
1. generates N rows shaped like the example data (Turku rows resampled, minute timestamps)
   and stores them the way the pipeline does: one batch in the warehouse's `observations`
   table, in a SQLite file, through the project's schema (include/sql/schema/);
2. in a fresh process, loads all N rows into memory (untimed) and times the model's raw
   `predict_proba` on them: the baseline;
3. in another fresh process, times the project's scoring path on the batch,
   `mlops.scoring.batch.score_with`: chunked keyset reads from the warehouse, the signature
   check, predict_proba into a local Parquet file, its upload to a staging key, the delete +
   insert of the predictions in one short transaction, then the copy to the final key in the
   object store (a real SeaweedFS started by this script on free ports). Not included: resolving the alias and loading the model
   from MLflow (once per batch, independent of N), Airflow's task start-up, and the
   process's first-use costs (imports, the S3 client), paid untimed by scoring a 1,000-row
   warm-up batch first, as a worker does with its first batch.
It prints end-to-end rows/s divided by raw rows/s (goal >= 0.6), and the peak RSS of each
scoring process (goal: about the same at every N: memory does not grow with the batch).

A size BxN (e.g. 100x1000) stores B batches of N rows and times scoring them one after
another in one process, as one batch_score group task does (the model loaded once): the
per-batch costs (queries, transaction, staging upload, copy) against predict_proba on all
B*N rows at once (goal >= 0.3).

The model is trained on the real example data with the pipeline's model contract (a
scikit-learn Pipeline taking the time column + configured features). The ratio depends on
the model's own cost: --model hgb (HistGradientBoosting, default) or logreg (much cheaper
predict, so the I/O share is larger).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "scripts")]

BATCH_ID = "bench"
# A small batch scored first, untimed: the first batch a worker process scores pays the
# imports (pyarrow, the Amazon provider, boto3) and the S3 client, a per-process constant.
WARMUP_BATCH_ID, WARMUP_ROWS = "warmup", 1_000
MODEL_NAME = "bench_model"
MODEL_VERSION = "1"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# ---------------------------------------------------------------- model


def train_model(kind: str, path: Path) -> None:
    import joblib
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from mlops import labels
    from mlops.config import get_config
    from mlops.scoring import batch as scoring

    dataset = get_config().dataset
    frame = pd.read_csv(ROOT / "include" / "data" / "port_of_turku_weather.csv.gz")
    frame[dataset.time_column] = pd.to_datetime(frame[dataset.time_column])
    frame = labels.add_label(frame.drop_duplicates(dataset.time_column), dataset).dropna(subset=[dataset.label.name])
    x = frame[[dataset.time_column, *dataset.features]]
    y = frame[dataset.label.name].astype(int)
    if kind == "hgb":
        classifier = HistGradientBoostingClassifier(max_iter=200, random_state=0)
    else:
        classifier = LogisticRegression(max_iter=1000)
    model = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [
                        (
                            "num",
                            Pipeline(
                                [
                                    ("impute", SimpleImputer()),
                                    ("scale", StandardScaler()),
                                ]
                            ),
                            dataset.features,
                        )
                    ]
                ),
            ),
            ("classify", classifier),
        ]
    ).fit(x, y)
    spec = scoring.input_spec(infer_signature(x, model.predict_proba(x)[:, 1]))
    joblib.dump({"model": model, "spec": spec}, path)


def load_model(path: Path):
    import joblib

    saved = joblib.load(path)
    return saved["model"], [tuple(s) for s in saved["spec"]]


# ---------------------------------------------------------------- children


def batch_ids(batches: int) -> list[str]:
    """The measured batches' ids: one big batch, or BATCH_ID-000 .. for a BxN size."""
    return [BATCH_ID] if batches == 1 else [f"{BATCH_ID}-{i:03d}" for i in range(batches)]


def child_generate(rows: int, batches: int = 1) -> dict:
    """N rows like the example data into the warehouse's observations table, in chunks
    (split into `batches` equal batches)."""
    import numpy as np
    import pandas as pd

    from mlops.config import get_config
    from mlops.io import warehouse

    dataset = get_config().dataset
    warehouse.ensure_schema()
    source = pd.read_csv(ROOT / "include" / "data" / "port_of_turku_weather.csv.gz").drop(columns=[dataset.time_column])
    rng = np.random.default_rng(0)
    start = pd.Timestamp("2000-01-01")
    loaded_at = pd.Timestamp.now(tz="UTC").strftime(warehouse.TIMESTAMP_FORMAT)
    step = 200_000
    engine = warehouse.engine()
    pieces = [(WARMUP_BATCH_ID, -WARMUP_ROWS, WARMUP_ROWS)]
    if batches == 1:
        pieces += [(BATCH_ID, offset, min(step, rows - offset)) for offset in range(0, rows, step)]
    else:
        size = rows // batches
        pieces += [(b, i * size, size) for i, b in enumerate(batch_ids(batches))]
    spans = {}
    with engine.begin() as conn:
        for batch_id, offset, n in pieces:
            chunk = source.iloc[rng.integers(0, len(source), n)].reset_index(drop=True)
            times = start + pd.to_timedelta(np.arange(offset, offset + n), unit="min")
            chunk.insert(0, dataset.time_column, times.strftime(warehouse.TIMESTAMP_FORMAT))
            chunk["batch_id"] = batch_id
            chunk["loaded_at"] = loaded_at
            chunk.to_sql("observations", conn, if_exists="append", index=False, chunksize=50_000)
            first, last = chunk[dataset.time_column].iloc[[0, -1]]
            spans[batch_id] = (min(first, spans.get(batch_id, (first,))[0]), last)
        record_spans(conn, spans)
    return {"rows": rows}


def record_spans(conn, spans: dict) -> None:
    """The batches rows ingest would have written: each batch loaded, with its time span (how the
    warehouse finds a batch's rows, see mlops.io.warehouse.in_batch_span)."""
    import sqlalchemy as sa

    from mlops.ingest.load import record_batch
    from mlops.io import warehouse

    widen = sa.text(warehouse.render_sql("ingest/widen_batch_span.sql"))
    for batch_id, (first, last) in spans.items():
        record_batch(conn, batch_id=batch_id, object_key=f"bench/{batch_id}", checksum=batch_id, status="loaded")
        conn.execute(widen, {"batch_id": batch_id, "first_time": first, "last_time": last})


def child_raw(rows: int, model_path: Path) -> dict:
    """Baseline: all rows in memory (loaded untimed), then predict_proba timed."""
    import pandas as pd
    import sqlalchemy as sa

    from mlops.io import warehouse
    from mlops.scoring import batch as scoring

    model, spec = load_model(model_path)
    columns = ", ".join(warehouse.quote(name) for name, _ in spec)
    with warehouse.engine().connect() as conn:
        frame = pd.read_sql_query(
            sa.text(f"SELECT {columns} FROM observations WHERE batch_id <> :warmup"),
            conn,
            params={"warmup": WARMUP_BATCH_ID},
        )
    x = scoring.coerce_to_spec(frame, spec, "bench")
    assert len(x) == rows, (len(x), rows)
    t0 = time.perf_counter()
    probability = model.predict_proba(x)[:, 1]
    seconds = time.perf_counter() - t0
    return {"rows": len(probability), "seconds": seconds, "peak_rss_mb": peak_rss_mb()}


def _profiler(profile: Path | None):
    """A running cProfile.Profile when `profile` (a .prof path) is given, else None."""
    if profile is None:
        return None
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    return profiler


def _print_profile(profiler, path: Path) -> None:
    """Save the profile and print its top functions by cumulative and by own time (to stderr)."""
    import pstats

    profiler.dump_stats(path)
    stats = pstats.Stats(profiler, stream=sys.stderr).strip_dirs()
    stats.sort_stats("cumulative").print_stats(35)
    stats.sort_stats("tottime").print_stats(20)


def child_score(rows: int, model_path: Path, batches: int = 1, profile: Path | None = None) -> dict:
    """The project's scoring path on the stored batch(es), one after another in this process
    (under cProfile when `profile` is given: the timed part only, saved there)."""
    import sqlalchemy as sa

    from mlops.io import warehouse
    from mlops.scoring import batch as scoring

    model, spec = load_model(model_path)
    scorers = {"champion": (MODEL_VERSION, model, spec)}
    warmup = scoring.score_with(WARMUP_BATCH_ID, MODEL_NAME, scorers)
    assert warmup["rows"] == WARMUP_ROWS, warmup
    # Measured: the first scoring of the batch. A kept --workdir holds an earlier run's rows,
    # which a rescore would delete first: they are removed here, untimed.
    with warehouse.engine().begin() as conn:
        conn.execute(sa.text("DELETE FROM predictions WHERE batch_id <> :w"), {"w": WARMUP_BATCH_ID})
    before = peak_rss_mb()
    profiler = _profiler(profile)
    t0 = time.perf_counter()
    # As a batch_score group task does (score_group without the model registry).
    planned = [{"batch_id": b, "roles": ["champion"]} for b in batch_ids(batches)]
    summaries, failures = scoring.score_batches(planned, MODEL_NAME, scorers)
    assert not failures, failures
    scored = sum(s["rows"] for s in summaries)
    seconds = time.perf_counter() - t0
    if profiler is not None:
        profiler.disable()
        _print_profile(profiler, profile)
    assert scored == rows, (scored, rows)
    return {
        "rows": scored,
        "seconds": seconds,
        "rss_before_mb": before,
        "peak_rss_mb": peak_rss_mb(),
    }


# ---------------------------------------------------------------- driver


def parse_size(text: str) -> tuple[int, int]:
    """(batches, total rows) of "1000000" (one batch) or "100x1000" (100 batches of 1,000 rows)."""
    batches, _, rows = text.partition("x")
    return (int(batches), int(batches) * int(rows)) if rows else (1, int(batches))


def run_child(role: str, rows: int, env: dict, model_path: Path, batches: int = 1, profile: Path | None = None) -> dict:
    """Run one child mode in a fresh process; its JSON result (a profile's tables go to stderr)."""
    argv = [
        sys.executable,
        __file__,
        "--child",
        role,
        "--rows",
        str(rows),
        "--model-path",
        str(model_path),
        "--batches",
        str(batches),
    ]
    if profile is not None:
        argv += ["--profile-path", str(profile)]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{role} child failed:\n{out.stderr[-4000:]}")
    if profile is not None:
        print(out.stderr, flush=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _parser() -> argparse.ArgumentParser:
    """The command line: sizes, model, workdir, threads, and the hidden child-process options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sizes", default="1000000,10000000,100x1000", help="comma-separated row counts or BATCHESxROWS"
    )
    parser.add_argument("--model", choices=["hgb", "logreg"], default="hgb")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep generated warehouses here (reused when present)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="OpenMP/BLAS threads of the measured processes (default 1: on a shared machine, "
        "oversubscribed OpenMP threads make chunked predict erratic; both sides use the same)",
    )
    parser.add_argument("--child", choices=["generate", "raw", "score"], help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--model-path", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--batches", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--profile-path", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run the timed scoring under cProfile: <workdir>/score-<size>.prof, top functions printed",
    )
    return parser


def _child_main(args: argparse.Namespace) -> int:
    """Run one measurement in this (child) process and print its result as JSON."""
    result = {
        "generate": lambda: child_generate(args.rows, args.batches),
        "raw": lambda: child_raw(args.rows, args.model_path),
        "score": lambda: child_score(args.rows, args.model_path, args.batches, args.profile_path),
    }[args.child]()
    print(json.dumps(result), flush=True)
    return 0


def _base_env(settings, workdir: Path, threads: int) -> dict:
    """The children's environment: the stack's connections, no MLOPS__ overrides, pinned BLAS threads."""
    base_env = {
        **os.environ,
        **settings.connection_env(),
        "AIRFLOW_HOME": str(workdir / "airflow_home"),
    }
    base_env = {k: v for k, v in base_env.items() if not k.startswith("MLOPS__")}
    n = str(threads)
    base_env.update(OMP_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n, MKL_NUM_THREADS=n)
    return base_env


def _bench_size(
    batches: int, rows: int, base_env: dict, model_path: Path, workdir: Path, profile: bool = False
) -> tuple:
    """Generate the size's warehouse once, then time raw predict_proba and the scoring path."""
    db = workdir / f"warehouse-{batches}x{rows}.db"
    env = {
        **base_env,
        "AIRFLOW_CONN_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(db)}),
    }
    marker = db.with_suffix(".with-warmup")
    if not marker.exists():
        db.unlink(missing_ok=True)
        t0 = time.perf_counter()
        run_child("generate", rows, env, model_path, batches)
        marker.write_text("ok")
        print(
            f"[bench] generated {rows:,} rows in {time.perf_counter() - t0:.0f}s",
            flush=True,
        )
    raw = run_child("raw", rows, env, model_path)
    print(f"[bench] {rows:,} raw predict_proba: {raw['seconds']:.1f}s", flush=True)
    profile_path = workdir / f"score-{batches}x{rows // batches}.prof" if profile else None
    e2e = run_child("score", rows, env, model_path, batches, profile_path)
    print(
        f"[bench] {rows:,} scoring path: {e2e['seconds']:.1f}s, peak RSS {e2e['peak_rss_mb']:.0f} MB",
        flush=True,
    )
    return batches, rows, raw, e2e


def _print_table(args: argparse.Namespace, results: list[tuple]) -> None:
    """The summary table: throughput of raw predict_proba and of the scoring path, peak RSS."""
    print(
        f"\nmodel: {args.model}; threads: {args.threads}; chunk rows: include/config/pipeline.yaml (scoring.chunk_rows)"
    )
    print(
        f"{'rows':>12} {'raw rows/s':>12} {'e2e rows/s':>12} {'e2e/raw':>8} {'scoring peak RSS':>17} {'(after model load)':>19}"
    )
    for batches, rows, raw, e2e in results:
        raw_rate, e2e_rate = rows / raw["seconds"], rows / e2e["seconds"]
        label = f"{rows:,}" if batches == 1 else f"{batches}x{rows // batches:,}"
        print(
            f"{label:>12} {raw_rate:>12,.0f} {e2e_rate:>12,.0f} {e2e_rate / raw_rate:>8.2f} "
            f"{e2e['peak_rss_mb']:>14.0f} MB {e2e['rss_before_mb']:>16.0f} MB"
        )


def main() -> int:
    args = _parser().parse_args()

    if args.child:
        return _child_main(args)

    import stack

    sizes = [parse_size(s) for s in args.sizes.split(",")]
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="bench-scoring-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    settings = stack.Settings.from_env(workdir / "stack")
    settings.s3_port, settings.weed_base_port = stack.free_port(), stack.free_weed_base()
    base_env = _base_env(settings, workdir, args.threads)
    model_path = workdir / f"model-{args.model}.joblib"
    print(
        f"[bench] workdir {workdir}; training the {args.model} model on the example data",
        flush=True,
    )
    sys.path.insert(0, str(ROOT / "plugins"))
    train_model(args.model, model_path)
    print("[bench] starting SeaweedFS on free ports", flush=True)
    stack.start_object_store(settings)
    results = []
    try:
        for batches, rows in sizes:
            results.append(_bench_size(batches, rows, base_env, model_path, workdir, args.profile))
    finally:
        stack.stop_process(settings, "seaweedfs")

    _print_table(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
