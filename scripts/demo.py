"""The main job of `make demo`: drive the running stack through the whole loop, like a real client.

It drops the configured example data set (dataset.example_file; --data FILE overrides it)
into the landing area of the object store one period at a time (S3 API) and follows the
DAGs through Airflow's REST API:

    ingest loads each month -> the first train run makes a champion -> batch_score scores
    later months -> drift_check compares recent data with the champion's training data and
    triggers train when the seasons change -> the new model is promoted or refused -> scoring
    goes on with the champion.

The data set is cut by its time column into periods (`period_rule`): months when it is
more frequent than daily (the hourly Turku example), quarters otherwise. The first file is
the history (everything before dataset.example_history_until, by default the periods
holding the first third of the rows); then the periods are dropped half a year at a time, each group followed by
scoring and a drift check. Object keys are <landing_prefix><dataset name>-<period>.csv.

The second drop carries the data set's demo fault (mlops.monitoring.faults.DEMO_FAULTS; Turku: a
barometer reporting station pressure, -10 hPa), which drift_check must catch; --fault SPEC,
--fault-drop N or --fault-from PERIOD choose another, --no-fault none.

Progress is printed as it happens, a summary (what fired, what the gate decided) and the time
of each phase at the end; per drift run the champion's estimated and realized performance
and whether each could be judged. Options: --data FILE, --periods-per-drop N (default: half
a year), --max-periods N (stop early), --reports-dir DIR (or MLOPS_DEMO_REPORTS_DIR: keep a
copy of every drift report HTML), --topology celery (drive the production topology of `make prod-up`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1] / "plugins")]

from airflow_api import AirflowClient  # noqa: E402
from mlops.config import get_config  # noqa: E402
from mlops.monitoring.faults import demo_fault, inject_fault, parse_fault  # noqa: E402
from stack import ROOT, ConfigMismatch, Settings, use_stack_config  # noqa: E402

PROJECT_DAGS = {"health_check", "ingest", "train", "batch_score", "drift_check"}


def period_rule(frequency: str) -> tuple[str, int]:
    """The drop period of a data set of this frequency and how many periods make half a year:
    ("M", 6) for data more frequent than daily, ("Q", 2) for daily or coarser data."""
    import pandas as pd

    return ("M", 6) if pd.Timedelta(frequency) < pd.Timedelta("1D") else ("Q", 2)


def fault_periods(
    names: list[str], periods_per_drop: int, drop: int | None = None, from_period: str | None = None
) -> set[str]:
    """The periods that get the demo's fault: those of drop number `drop` (1 = the first drop
    after the history, names[0]), else every period from `from_period` on (all when None)."""
    periods = [n for n in names if not n.startswith("history")]
    if drop is not None:
        return set(periods[(drop - 1) * periods_per_drop : drop * periods_per_drop])
    return {n for n in periods if n >= (from_period or "")}


def cut_into_periods(raw, dataset, history_until: str | None = None) -> list[tuple[str, object]]:
    """The rows of `raw` (strings, as read from the file) as [(name, frame)], history first.

    Periods come from dataset.time_column parsed with dataset.time_format; rows whose time
    does not parse go into the history file, where validation reports them. The history is
    every row before `history_until` (a period label like "2015-07" or "2021-Q3"), by default
    the periods that hold the first third of the rows. Raises ValueError naming a missing time column.
    """
    import pandas as pd

    if dataset.time_column not in raw.columns:
        raise ValueError(f"the data has no time column {dataset.time_column!r} (columns: {list(raw.columns)})")
    freq, _ = period_rule(dataset.frequency)
    times = pd.to_datetime(raw[dataset.time_column], format=dataset.time_format, errors="coerce")
    if freq == "M":
        periods = times.dt.strftime("%Y-%m")
    else:
        periods = times.dt.year.astype("Int64").astype(str) + "-Q" + times.dt.quarter.astype("Int64").astype(str)
    periods = periods.where(times.notna(), "")
    counts = periods[periods != ""].value_counts().sort_index()
    labels = list(counts.index)
    if history_until is None and labels:
        # the first period after the first third of the rows
        before = counts.cumsum() - counts
        history_until = next((p for p in labels if before[p] >= len(raw) / 3), labels[-1])
    if history_until is None:  # no parseable time at all: everything is history
        history_until = "end"
    files = [(f"history-until-{history_until}", raw[(periods == "") | (periods < history_until)])]
    files += [(label, raw[periods == label]) for label in labels if label >= history_until]
    return files


def say(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _metrics(block: dict | None) -> str:
    if not block or not block.get("n"):
        return "none"
    shown = ", ".join(
        f"{name} {block[name]:.3f}" for name in ("accuracy", "f1", "brier") if block.get(name) is not None
    )
    return f"{shown} on {block['n']}"


def performance_lines(performance: dict | None) -> list[str]:
    """A drift run's champion performance for the demo: estimated (CBPE, every run) and realized
    (once labels arrived), the holdout they are compared with, and whether each could be judged
    and why not (the result's performance block, mlops.monitoring.drift.champion_performance)."""
    if not performance:
        return ["performance: not in the result"]
    estimated = performance.get("estimated") or {}
    unlabeled = (estimated.get("unlabeled") or {}).get("n", 0)
    holdout = performance.get("holdout") or {}
    lines = [
        f"estimated: {_metrics(estimated)} predictions ({unlabeled} without truth yet; "
        f"{(performance.get('calibration') or {}).get('status', 'calibration unknown')})",
        f"realized:  {_metrics(performance.get('champion'))} labelled predictions",
        "holdout:   " + (", ".join(f"{k} {v:.3f}" for k, v in sorted(holdout.items())) or "none"),
    ]
    bucket = {"D": "day", "W": "week", "M": "month"}.get(performance.get("bucket"), performance.get("bucket"))
    lines += [
        f"{note} [plot points: one per {bucket}]" if i == 0 else note for i, note in enumerate(performance["notes"])
    ]
    if performance.get("drops"):
        lines.append("dropped: " + "; ".join(performance["drops"]))
    return lines


class Demo:
    def __init__(
        self,
        settings: Settings,
        periods_per_drop: int | None = None,
        max_periods: int | None = None,
        data_file: Path | None = None,
        fault: str | None = None,
        fault_from: str | None = None,
        fault_drop: int | None = None,
        reports_dir: Path | None = None,
    ):
        import boto3

        self.settings = settings
        self.config = get_config()
        dataset = self.config.dataset
        if data_file is None:
            if dataset.example_file is None:
                raise SystemExit("the configuration names no dataset.example_file: pass --data FILE")
            data_file = ROOT / dataset.example_file
        self.data_file = Path(data_file)
        if not self.data_file.is_file():
            raise SystemExit(f"data file {self.data_file} does not exist")
        self.periods_per_drop = periods_per_drop or period_rule(dataset.frequency)[1]
        self.max_periods = max_periods
        # A broken sensor (mlops.monitoring.faults) in the periods of drop number fault_drop (1 = the first
        # drop after the history), or from period fault_from on: what drift_check must catch.
        # fault "default": the data set's demo fault (none for some data sets).
        self.fault = demo_fault(dataset.name) if fault == "default" else parse_fault(fault) if fault else None
        self.fault_from, self.fault_drop = fault_from, None if fault_from else fault_drop
        self.timings: list[tuple[str, float]] = []  # (phase, seconds), printed at the end
        self.client = AirflowClient(settings.airflow_url, settings.airflow_user, settings.airflow_password)
        self.s3 = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint,
            aws_access_key_id=settings.access_key,
            aws_secret_access_key=settings.secret_key,
            region_name="us-east-1",
        )
        self.summary: dict = {"drift_runs": [], "train_runs": [], "gate": [], "performance": []}
        self.reports_dir = Path(reports_dir) if reports_dir else None
        self._warehouse = None

    # ------------------------------------------------------------------ helpers

    def warehouse_query(self, sql: str) -> list[tuple]:
        """A look at the warehouse (SQLite file or PostgreSQL) for progress and the summary."""
        import sqlalchemy as sa

        if self.settings.warehouse == "sqlite" and not self.settings.warehouse_path.exists():
            return []
        if self._warehouse is None:
            self._warehouse = sa.create_engine(self.settings.warehouse_url, poolclass=sa.pool.NullPool)
        try:
            with self._warehouse.connect() as conn:
                return [tuple(row) for row in conn.execute(sa.text(sql))]
        except (sa.exc.OperationalError, sa.exc.ProgrammingError):
            return []  # table not created yet

    def run_dag(self, dag_id: str, conf: dict | None = None, timeout: float = 1200) -> dict:
        run_id = self.client.trigger(dag_id, conf)
        say(f"triggered {dag_id} ({run_id})")
        return self.wait_run(dag_id, run_id, timeout)

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 1200) -> dict:
        def progress(run, tis):
            done = sum(t["state"] == "success" for t in tis)
            running = [t["task_id"] for t in tis if t["state"] in ("running", "queued", "deferred")]
            say(
                f"  {dag_id}: {run['state']}, {done}/{len(tis)} tasks done{', now: ' + ', '.join(running) if running else ''}"
            )

        run = self.client.wait_for_run(dag_id, run_id, timeout=timeout, on_progress=progress)
        if run["state"] != "success":
            say(f"  {dag_id} run {run_id} ended {run['state']}: see its task logs in the Airflow UI")
        return run

    def wait_idle(self, dag_id: str, timeout: float = 1200) -> None:
        """Wait until the DAG has no queued or running runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            active = [r for r in self.client.dag_runs(dag_id, limit=20) if r["state"] in ("queued", "running")]
            if not active:
                return
            for run in active:
                self.wait_run(dag_id, run["dag_run_id"], timeout=deadline - time.monotonic())
        raise TimeoutError(f"{dag_id} still busy after {timeout:.0f}s")

    # ------------------------------------------------------------------ steps

    def step_dags_parsed(self) -> None:
        dags = self.client.wait_for_dags(PROJECT_DAGS)
        self.summary["dags"] = sorted(d["dag_id"] for d in dags)
        for dag_id in PROJECT_DAGS:
            self.client.set_paused(dag_id, False)
        say(f"DAGs parsed without import errors and unpaused: {', '.join(self.summary['dags'])}")

    def step_health_check(self) -> None:
        run = self.run_dag("health_check")
        self.summary["health_check"] = run["state"]
        if run["state"] != "success":
            raise SystemExit("health_check failed: the services do not answer; see .stack/logs/")
        say("health_check succeeded: object store, MLflow and warehouse answer")

    def period_files(self) -> list[tuple[str, bytes]]:
        """The data set cut into CSV files (history first), as upstream would send them."""
        import pandas as pd

        dataset = self.config.dataset
        raw = pd.read_csv(self.data_file, dtype=str, keep_default_na=False)
        files = cut_into_periods(raw, dataset, dataset.example_history_until)
        if self.max_periods:
            files = files[: self.max_periods + 1]
        faulty = fault_periods([name for name, _ in files], self.periods_per_drop, self.fault_drop, self.fault_from)
        out = []
        for name, frame in files:
            if self.fault and name in faulty:
                frame = inject_fault(frame, self.fault)
                say(f"fault injected into {name}: {self.fault.describe()}")
            buf = io.StringIO()
            frame.to_csv(buf, index=False)
            out.append((name, buf.getvalue().encode()))
        return out

    def drop(self, files: list[tuple[str, bytes]]) -> list[str]:
        storage = self.config.storage
        keys = []
        for name, body in files:
            key = f"{storage.landing_prefix}{self.config.dataset.name}-{name}.csv"
            self.s3.put_object(Bucket=storage.bucket, Key=key, Body=body)
            rows = body.count(b"\n") - 1
            say(f"uploaded s3://{storage.bucket}/{key} ({rows} rows)")
            keys.append(key)
        return keys

    def wait_ingested(self, keys: list[str], timeout: float = 900) -> None:
        """ingest runs continuously (its sensor waits for landing objects): wait for each key's batch row."""
        quoted = ", ".join("'" + k.replace("'", "''") + "'" for k in keys)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = self.warehouse_query(f"SELECT object_key, status FROM batches WHERE object_key IN ({quoted})")
            if len({key for key, _ in done}) == len(keys):
                say("ingested: " + ", ".join(f"{key.rsplit('/', 1)[-1]}={status}" for key, status in done))
                return
            time.sleep(3)
        raise TimeoutError(f"ingest did not record {keys} within {timeout:.0f}s: see the ingest runs in the UI")

    def champion_version(self) -> str | None:
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=self.settings.mlflow_url)
        try:
            return client.get_model_version_by_alias(self.config.model.registered_name, "champion").version
        except mlflow.exceptions.MlflowException:
            return None

    def wait_scored(self, timeout: float = 900) -> None:
        """batch_score runs on the observations asset; wait until every loaded batch has champion predictions."""
        from mlops.io.warehouse import in_batch_span

        sql = (
            "SELECT count(*) FROM batches b WHERE b.status = 'loaded' "
            f"AND EXISTS (SELECT 1 FROM observations o WHERE {in_batch_span('b.batch_id', 'o.', span='b')}) "
            "AND NOT EXISTS (SELECT 1 FROM predictions p WHERE p.batch_id = b.batch_id AND p.role = 'champion')"
        )
        if self.champion_version() is None:
            say("  no champion yet: scoring waits (the promote task's log says what evidence was missing)")
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pending = self.warehouse_query(sql)
            if pending and pending[0][0] == 0:
                self.wait_idle("batch_score")
                return
            time.sleep(3)
        say("  some batches are still unscored; continuing (see batch_score runs in the UI)")

    def score_backlog(self) -> None:
        """Batches loaded while there was no champion: a manual batch_score run without params
        scores every batch the champion has not scored yet."""
        if self.champion_version() is None:
            say("  no champion yet: scoring waits (the promote task's log says what evidence was missing)")
            return
        self.run_dag("batch_score")
        self.wait_scored()

    def train(self, reason: str) -> None:
        run = self.run_dag("train", {"reason": reason})
        self.summary["train_runs"].append((run["dag_run_id"], run["state"], reason))
        say(f"train {run['state']}; champion is now version {self.champion_version()}")

    def drift_check(self) -> None:
        before = {r["dag_run_id"] for r in self.client.dag_runs("train", limit=50)}
        # The demo replays months in minutes, so the wall-clock cooldown between retrainings
        # (drift.cooldown_hours, 24 h) would block every retraining after the first; it is set
        # to 0 for these runs. The other guard (no trigger while train is queued or running) stays.
        run = self.run_dag("drift_check", {"cooldown_hours": 0})
        run_id = run["dag_run_id"].replace("'", "''")
        verdict = self.warehouse_query(
            "SELECT rule_fired, drifted_features, reason, retrain_decision, retrain_detail, report_uri "
            f"FROM drift_runs WHERE airflow_run_id = '{run_id}'"
        )
        performance = None
        if verdict:
            fired, features, reason, decision, detail, report = verdict[0]
            say(f"drift_check: rule {'FIRED' if fired else 'quiet'} ({reason}); retrain: {decision} {detail or ''}")
            say(f"  report: {report}")
            performance = self.drift_result(report).get("performance")
            for line in performance_lines(performance):
                say(f"  {line}")
            self.save_report(report)
        else:
            fired, features, reason, decision = None, "", "", "no result (no champion yet?)"
        self.summary["drift_runs"].append((run["dag_run_id"], run["state"], bool(fired), features, decision, reason))
        self.summary["performance"].append((run["dag_run_id"], performance_lines(performance)))
        new_train_runs = [r for r in self.client.dag_runs("train", limit=50) if r["dag_run_id"] not in before]
        for train_run in new_train_runs:
            say(f"drift_check triggered train ({train_run['dag_run_id']}); following it")
            finished = self.wait_run("train", train_run["dag_run_id"])
            reason = (train_run.get("conf") or {}).get("reason", "drift")
            self.summary["train_runs"].append((train_run["dag_run_id"], finished["state"], reason))
            gate = self.warehouse_query(
                "SELECT outcome, candidate_version, reason FROM model_decisions ORDER BY decided_at DESC LIMIT 1"
            )
            self.summary["gate"].append((run["dag_run_id"], *(gate[0] if gate else ("no decision", None, ""))))
            say(f"champion is now version {self.champion_version()}")

    def _object(self, uri: str) -> bytes:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def drift_result(self, report_uri: str) -> dict:
        """The drift run's full result (result.json beside its report in the object store), {} if unreadable."""
        try:
            return json.loads(self._object(report_uri.rsplit("/", 1)[0] + "/result.json"))
        except Exception as exc:  # noqa: BLE001 - the summary says so and goes on
            say(f"  the drift result beside {report_uri} could not be read: {exc}")
            return {}

    def save_report(self, report_uri: str) -> None:
        """Copy the drift report HTML into --reports-dir (MLOPS_DEMO_REPORTS_DIR), if set."""
        if not self.reports_dir:
            return
        self.reports_dir.mkdir(parents=True, exist_ok=True)
        target = self.reports_dir / (report_uri.rstrip("/").split("/")[-2] + ".html")
        target.write_bytes(self._object(report_uri))
        say(f"  report saved: {target}")

    @contextlib.contextmanager
    def phase(self, name: str):
        """Time a phase of the demo for the closing table."""
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.timings.append((name, time.monotonic() - t0))

    def step_loop(self) -> None:
        files = self.period_files()
        history, periods = files[0], files[1:]
        say(
            f"replaying {self.data_file.name}: {len(files)} files, the history, then {len(periods)} periods, "
            f"{self.periods_per_drop} at a time"
        )
        with self.phase(f"ingest {history[0]}"):
            self.wait_ingested(self.drop([history]))
        with self.phase("train (initial)"):
            self.train("initial training on the history")
        with self.phase("score the history"):
            self.score_backlog()
        for start in range(0, len(periods), self.periods_per_drop):
            group = periods[start : start + self.periods_per_drop]
            span = f"{group[0][0]} .. {group[-1][0]}"
            say(f"--- periods {span}")
            with self.phase(f"ingest {span}"):
                self.wait_ingested(self.drop(group))
            with self.phase(f"score {span}"):
                self.wait_scored()
            if self.champion_version() is None:
                # No champion yet (the gate wants more evidence): train again on the longer
                # history, as the weekly schedule would, and score the backlog if one emerged.
                with self.phase(f"train (no champion yet) {span}"):
                    self.train(f"no champion yet; more data arrived ({span})")
                    self.score_backlog()
            if self.champion_version() is not None:  # drift_check compares with a champion
                with self.phase(f"drift (+ train) {span}"):
                    self.drift_check()

    def fault_note(self) -> str:
        if self.fault is None:
            return "none"
        where = f"drop {self.fault_drop}" if self.fault_drop is not None else f"periods from {self.fault_from}"
        return f"{self.fault.describe()} in {where}"

    def print_timings(self, before: list[tuple[str, float]]) -> None:
        """Where the time went: `before` (install, services up: measured by make) and the phases."""
        rows = before + self.timings
        width = max(len(name) for name, _ in rows)
        lines = ["", "time per phase:"] + [f"  {name:{width}s} {seconds:7.1f} s" for name, seconds in rows]
        lines.append(f"  {'total':{width}s} {sum(s for _, s in rows):7.1f} s")
        print("\n".join(lines), flush=True)

    # ------------------------------------------------------------------ summary

    def print_summary(self) -> None:
        import mlflow

        s = self.settings
        batches = self.warehouse_query(
            "SELECT object_key, status, rows_in, rows_kept, rows_dropped, reason FROM batches ORDER BY loaded_at"
        )
        predictions = self.warehouse_query("SELECT role, model_version, count(*) FROM predictions GROUP BY 1, 2")
        decisions = self.warehouse_query(
            "SELECT decided_at, action, outcome, candidate_version, champion_before, champion_after, reason "
            "FROM model_decisions ORDER BY decided_at"
        )
        lines = ["", "===================== demo summary ====================="]
        lines.append(
            f"DAGs: {', '.join(self.summary.get('dags', []))}; health check: {self.summary.get('health_check')}"
        )
        loaded = [b for b in batches if b[1] == "loaded"]
        lines.append(f"batches: {len(loaded)} loaded, {len(batches) - len(loaded)} quarantined")
        for key, status, rows_in, kept, dropped, reason in batches:
            extra = f" - {reason}" if reason else ""
            lines.append(f"  {status:11s} {key}: {rows_in} rows in, {kept} kept, {dropped} dropped{extra}")
        client = mlflow.MlflowClient(tracking_uri=s.mlflow_url)
        name = self.config.model.registered_name
        lines.append(f"model versions of {name!r} (champion: {self.champion_version()}):")
        try:
            found = client.search_model_versions(f"name = '{name}'")
            # search results carry no aliases; get_model_version does
            versions = sorted((client.get_model_version(name, v.version) for v in found), key=lambda v: int(v.version))
        except mlflow.exceptions.MlflowException:
            versions = []
        metric = self.config.promotion.metric
        for v in versions:
            holdout = json.loads(v.tags.get("holdout_metrics") or "{}").get(metric.removeprefix("neg_"), "?")
            lines.append(
                f"  v{v.version}: holdout {metric}={holdout}, aliases={list(v.aliases)}; "
                f"{v.tags.get('decision.action', '')} {v.tags.get('decision.outcome', '')}".rstrip("; ")
            )
        if decisions:
            lines.append("champion history (warehouse table model_decisions):")
            for at, action, outcome, candidate, before, after, reason in decisions:
                lines.append(f"  {at} {action} v{candidate}: {outcome}, champion {before} -> {after}. {reason}")
        lines.append("train runs:")
        lines.extend(f"  {run_id}: {state} ({reason})" for run_id, state, reason in self.summary["train_runs"])
        lines.append(f"injected fault: {self.fault_note()}")
        lines.append("drift_check runs (run, state, rule fired, drifted features, retrain decision, why):")
        lines.extend(f"  {row}" for row in self.summary["drift_runs"])
        lines.append("champion performance per drift run (estimated from probabilities; realized once labels arrived):")
        for run_id, performance in self.summary["performance"]:
            lines.append(f"  {run_id}:")
            lines.extend(f"    {line}" for line in performance)
        lines.append("gate decisions on the retrains drift_check triggered (drift run, outcome, candidate, why):")
        lines.extend(f"  {row}" for row in self.summary["gate"] or [("none",)])
        lines.append("predictions (role, model version, rows):")
        lines.extend(f"  {row}" for row in predictions)
        lines += [
            f"Airflow UI: {s.airflow_url}  (login {s.airflow_user} / {s.airflow_password})",
            f"MLflow UI:  {s.mlflow_url}  (experiment and registered model {name!r})",
            f"S3:         {s.s3_endpoint}  bucket {self.config.storage.bucket} (keys in {s.state_dir / 'credentials.json'})",
            "The stack stays up for exploring; `make down` stops it, `make reset` wipes it.",
        ]
        print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="the file to replay (default: dataset.example_file)")
    parser.add_argument(
        "--periods-per-drop", "--months-per-drop", type=int, default=None, help="default: half a year of periods"
    )
    parser.add_argument("--max-periods", "--max-months", type=int, default=None, help="stop after N periods")
    parser.add_argument(
        "--fault",
        default="default",
        help="inject a sensor fault, e.g. 'Temperature_C:+4' or 'Humidity:*1.2'; default: the data set's "
        "demo fault (mlops.monitoring.faults.DEMO_FAULTS)",
    )
    parser.add_argument("--no-fault", dest="fault", action="store_const", const="", help="no fault")
    parser.add_argument(
        "--fault-drop", type=int, default=2, help="the drop with the fault (1 = the first after the history)"
    )
    parser.add_argument(
        "--fault-from", default=None, help="first period with the fault, every later one too (e.g. 2016-03)"
    )
    parser.add_argument(
        "--timings",
        default="",
        help="phases measured before the demo started, 'name=seconds,...' (make demo passes install and services up)",
    )
    parser.add_argument(
        "--reports-dir",
        type=Path,
        default=os.environ.get("MLOPS_DEMO_REPORTS_DIR") or None,
        help="copy every drift report HTML here (default: $MLOPS_DEMO_REPORTS_DIR; none)",
    )
    parser.add_argument(
        "--topology",
        choices=["standalone", "celery"],
        default="standalone",
        help="the stack to drive (make up / prod-up)",
    )
    args = parser.parse_args(argv)
    settings = Settings.from_env(topology=args.topology)
    os.environ.update(settings.mlflow_client_env())  # the demo reads the registry through MLflow's basic auth
    try:
        use_stack_config(settings)  # the data set the stack runs, whatever this shell's MLOPS_CONFIG
    except ConfigMismatch as exc:
        raise SystemExit(f"[demo] {exc}") from None
    demo = Demo(
        settings,
        args.periods_per_drop,
        args.max_periods,
        args.data,
        args.fault,
        args.fault_from,
        args.fault_drop,
        args.reports_dir,
    )
    before = [(name, float(secs)) for name, secs in (p.split("=") for p in args.timings.split(",") if p)]
    t0 = time.monotonic()
    with demo.phase("DAGs parsed, health check"):
        demo.step_dags_parsed()
        demo.step_health_check()
    demo.step_loop()
    demo.print_summary()
    demo.print_timings(before)
    say(f"demo finished in {(time.monotonic() - t0) / 60:.1f} minutes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
