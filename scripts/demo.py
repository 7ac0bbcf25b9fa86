"""The main job of `make demo`: drive the running stack through the whole loop, like a real client.

It drops the example data into the landing area of the object store one month at a time
(S3 API) and follows the DAGs through Airflow's REST API:

    ingest loads each month -> the first train run makes a champion -> batch_score scores
    later months -> drift_check compares recent data with the champion's training data and
    triggers train when the seasons change -> the new model is promoted or refused -> scoring
    goes on with the champion.

Each step is a function in STEPS. Progress is printed as it happens, a summary at the end.
Options: --months-per-drop N (months uploaded together, default 6), --max-months N (stop early),
--topology celery (drive the production topology of `make prod-up` instead of `make up`).
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1] / "plugins")]

from airflow_api import AirflowClient  # noqa: E402
from mlops.config import get_config  # noqa: E402
from stack import ROOT, Settings  # noqa: E402

PROJECT_DAGS = {"health_check", "ingest", "train", "batch_score", "drift_check"}
EXAMPLE_DATA = ROOT / "include" / "data" / "port_of_turku_weather.csv.gz"
# The first drop: everything before this month (the scattered 2006-2014 rows and the first
# half of 2015) is the history the first model is trained on.
FIRST_MONTH_AFTER_HISTORY = "2015-07"


def say(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Demo:
    def __init__(self, settings: Settings, months_per_drop: int, max_months: int | None):
        import boto3

        self.settings = settings
        self.config = get_config()
        self.months_per_drop = months_per_drop
        self.max_months = max_months
        self.client = AirflowClient(settings.airflow_url, settings.airflow_user, settings.airflow_password)
        self.s3 = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint,
            aws_access_key_id=settings.access_key,
            aws_secret_access_key=settings.secret_key,
            region_name="us-east-1",
        )
        self.summary: dict = {"drift_runs": [], "train_runs": []}
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

    def month_files(self) -> list[tuple[str, bytes]]:
        """The example data cut into monthly CSV files (history first), as upstream would send them."""
        import pandas as pd

        with gzip.open(EXAMPLE_DATA, "rt") as fh:
            raw = pd.read_csv(fh, dtype=str, keep_default_na=False)
        month = raw[self.config.dataset.time_column].str.slice(0, 7)
        files = []
        history = raw[month < FIRST_MONTH_AFTER_HISTORY]
        files.append((f"history-until-{FIRST_MONTH_AFTER_HISTORY}", history))
        for name in sorted(m for m in month.unique() if m >= FIRST_MONTH_AFTER_HISTORY):
            files.append((name, raw[month == name]))
        if self.max_months:
            files = files[: self.max_months + 1]
        out = []
        for name, frame in files:
            buf = io.StringIO()
            frame.to_csv(buf, index=False)
            out.append((name, buf.getvalue().encode()))
        return out

    def drop(self, files: list[tuple[str, bytes]]) -> list[str]:
        storage = self.config.storage
        keys = []
        for name, body in files:
            key = f"{storage.landing_prefix}turku-{name}.csv"
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
        sql = (
            "SELECT count(*) FROM batches b WHERE b.status = 'loaded' "
            "AND EXISTS (SELECT 1 FROM observations o WHERE o.batch_id = b.batch_id) "
            "AND NOT EXISTS (SELECT 1 FROM predictions p WHERE p.batch_id = b.batch_id AND p.role = 'champion')"
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pending = self.warehouse_query(sql)
            if pending and pending[0][0] == 0:
                self.wait_idle("batch_score")
                return
            time.sleep(3)
        say("  some batches are still unscored; continuing (see batch_score runs in the UI)")

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
        if verdict:
            fired, features, reason, decision, detail, report = verdict[0]
            say(f"drift_check: rule {'FIRED' if fired else 'quiet'} ({reason}); retrain: {decision} {detail or ''}")
            say(f"  report: {report}")
        else:
            fired, features, decision = None, "", "no result (no champion yet?)"
        self.summary["drift_runs"].append((run["dag_run_id"], run["state"], bool(fired), features, decision))
        new_train_runs = [r for r in self.client.dag_runs("train", limit=50) if r["dag_run_id"] not in before]
        for train_run in new_train_runs:
            say(f"drift_check triggered train ({train_run['dag_run_id']}); following it")
            finished = self.wait_run("train", train_run["dag_run_id"])
            reason = (train_run.get("conf") or {}).get("reason", "drift")
            self.summary["train_runs"].append((train_run["dag_run_id"], finished["state"], reason))
            say(f"champion is now version {self.champion_version()}")

    def step_loop(self) -> None:
        files = self.month_files()
        history, months = files[0], files[1:]
        say(f"replaying {len(files)} files: the history, then {len(months)} months, {self.months_per_drop} at a time")
        self.wait_ingested(self.drop([history]))
        self.train("initial training on the history")
        # The history was loaded before any champion existed: score it now (a manual run
        # without params scores every batch the champion has not scored yet).
        self.run_dag("batch_score")
        self.wait_scored()
        for start in range(0, len(months), self.months_per_drop):
            group = months[start : start + self.months_per_drop]
            say(f"--- months {group[0][0]} .. {group[-1][0]}")
            self.wait_ingested(self.drop(group))
            self.wait_scored()
            self.drift_check()

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
        for v in versions:
            metric = self.config.promotion.metric
            lines.append(
                f"  v{v.version}: holdout {metric}={v.tags.get('holdout_' + metric, '?')}, aliases={list(v.aliases)}; "
                f"{v.tags.get('decision.outcome', '')}: {v.tags.get('decision.reason', '')}".rstrip(": ")
            )
        if decisions:
            lines.append("champion history (warehouse table model_decisions):")
            for at, action, outcome, candidate, before, after, reason in decisions:
                lines.append(f"  {at} {action} v{candidate}: {outcome}, champion {before} -> {after}. {reason}")
        lines.append("train runs:")
        lines.extend(f"  {run_id}: {state} ({reason})" for run_id, state, reason in self.summary["train_runs"])
        lines.append("drift_check runs (run, state, rule fired, drifted features, retrain decision):")
        lines.extend(f"  {row}" for row in self.summary["drift_runs"])
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
    parser.add_argument("--months-per-drop", type=int, default=6)
    parser.add_argument("--max-months", type=int, default=None)
    parser.add_argument(
        "--topology",
        choices=["standalone", "celery"],
        default="standalone",
        help="the stack to drive (make up / prod-up)",
    )
    args = parser.parse_args(argv)
    demo = Demo(Settings.from_env(topology=args.topology), args.months_per_drop, args.max_months)
    t0 = time.monotonic()
    demo.step_dags_parsed()
    demo.step_health_check()
    demo.step_loop()
    demo.print_summary()
    say(f"demo finished in {(time.monotonic() - t0) / 60:.1f} minutes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
