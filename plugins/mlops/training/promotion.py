"""Gated promotion of the challenger, and rollback of the champion.

Policy (the TFX Evaluator/Pusher contract): the newly registered version has the alias
`challenger`. It is scored with the current `champion` and the two baselines (persistence,
base rate) on the SAME most recent holdout. It becomes `champion` only if
  * the holdout holds at least promotion.min_holdout_positives positive and
    promotion.min_holdout_negatives negative rows (otherwise: insufficient_evidence);
  * it beats EACH baseline, and the champion if there is one, on promotion.metric with the
    paired bootstrap CI of the difference (holdout rows resampled together, seeded) above
    zero, and beats the champion by more than promotion.min_improvement;
  * it is not significantly worse than persistence on any of promotion.guard_metrics (the
    CI of the difference entirely below zero).
The first champion needs the same evidence (minus the champion comparison). force_promote
overrides the gate (recorded as such). Every decision - scores, tests, holdout counts, reason,
trigger - goes to the version's description (a summary) and 3 tags (action, outcome, time),
to the train run's artifact promotion/decision.json and to the warehouse table model_decisions.

Human approval (promotion.approval = never | borderline | always): in `borderline`, a decision
whose bootstrap CI straddles its margin, or on which a guard metric is worse than persistence
without being significantly so, waits for a person (the train DAG's `approval` task, Airflow's
HITLOperator, in the UI's "Required actions"); in `always`, so does every promotion. The answer
and who gave it become part of the decision; no answer within promotion.approval_timeout_hours
keeps the champion. The decision is computed by `propose` and carried out by `complete`.

Crash safety: a decision is written as the registered model's tag `pending_decision` (the
whole decision, JSON) BEFORE any alias moves; then the aliases, tags and records are applied
(each step idempotent) and the tag is cleared last. A retry of the same DAG run finds the
recorded decision or the pending intent and completes exactly that, so killing the task at
any step and retrying ends like an uninterrupted run. Rollback follows the same protocol.
"""

from __future__ import annotations

import json
import logging

from mlops.config import get_config
from mlops.crashpoints import CRASH_AT_ENV  # noqa: F401  (the kill tests import it from here)
from mlops.crashpoints import crash_point as _crash_point
from mlops.io.registry import CHALLENGER, CHAMPION, PENDING_DECISION_TAG, PREVIOUS_CHAMPION_TAG

log = logging.getLogger(__name__)
# Predictions of registered versions on holdouts, reused by propose (holdout_probabilities).
HOLDOUT_CACHE_PREFIX = "cache/holdout_predictions/"

BASELINES = ("persistence", "base_rate")
# Fault injection for the kill tests: SIGKILL this process at the named step
# (intent_written, alias_moved, recorded) of a promotion or rollback.


# ---------------------------------------------------------------- the decision (pure)


def _ci(test: dict) -> str:
    return f"{test['confidence']:.0%} CI [{test['ci_low']:+.4f}, {test['ci_high']:+.4f}]"


def _evidence_failures(metric: str, scores: dict, tests: dict, guards: dict) -> list[str]:
    """Why the candidate does not beat the baselines / passes no guard (empty: it does)."""
    failures = []
    for baseline in BASELINES:
        test = tests[baseline]
        if not test["ci_low"] > 0:
            failures.append(
                f"{metric} {scores['candidate']:.4f} vs the {baseline.replace('_', ' ')} baseline "
                f"{scores[baseline]:.4f}: difference {test['difference']:+.4f}, {_ci(test)} does not lie above 0"
            )
    for guard, test in guards.items():
        if test["ci_high"] < 0:
            failures.append(
                f"significantly worse than persistence on {guard}: difference {test['difference']:+.4f}, "
                f"{_ci(test)} lies below 0"
            )
    return failures


def decide(
    metric: str,
    scores: dict,
    tests: dict,
    guards: dict,
    counts: dict,
    minimums: dict,
    min_improvement: float,
    force: bool = False,
    champion_version: str | None = None,
) -> dict:
    """Apply the promotion policy. Returns {"outcome", "promote", "reason"}.

    scores: promotion.metric (higher is better) of "candidate", "persistence", "base_rate" and
    "champion" (None without a champion). tests: paired_bootstrap of candidate minus each of
    "persistence", "base_rate", "champion" (None without one) on that metric. guards: {metric
    name: paired_bootstrap of candidate minus persistence, higher is better}. counts and
    minimums: {"positives": n, "negatives": n} of the holdout and the configured floors.
    Outcomes: insufficient_evidence, rejected, first_champion, promoted, forced."""
    short = _shortfalls(counts, minimums)
    failures = [] if short else _evidence_failures(metric, scores, tests, guards)
    champion = scores.get("champion")
    if champion is not None and not short:
        failures += _champion_failures(metric, scores, tests["champion"], min_improvement, champion_version)
    gate = "too little evidence: " + "; ".join(short) if short else "; ".join(failures)
    if gate and force:
        return {
            "outcome": "forced",
            "promote": True,
            "reason": f"force_promote=True overrode the gate, which said: {gate}",
        }
    if short:
        return {"outcome": "insufficient_evidence", "promote": False, "reason": gate}
    if failures:
        return {"outcome": "rejected", "promote": False, "reason": gate}
    return _passed(metric, scores, tests, champion_version)


def _shortfalls(counts: dict, minimums: dict) -> list[str]:
    """The holdout's classes below their configured floor (empty: enough evidence)."""
    return [
        f"{counts[kind]} {kind[:-1]} holdout rows (promotion.min_holdout_{kind} = {minimums[kind]})"
        for kind in ("positives", "negatives")
        if counts[kind] < minimums[kind]
    ]


def _champion_failures(
    metric: str, scores: dict, test: dict | None, min_improvement: float, champion_version: str | None
) -> list[str]:
    """Why the candidate does not beat the champion by the margin (empty: it does)."""
    if test is None:
        raise ValueError("a paired test is required when there is a champion")
    champion = scores["champion"]
    failures = []
    if not test["difference"] > min_improvement:
        failures.append(
            f"{metric} {scores['candidate']:.4f} vs champion v{champion_version} {champion:.4f}: difference "
            f"{test['difference']:+.4f} is not above the required margin {min_improvement:+.4f}"
        )
    if not test["ci_low"] > 0:
        failures.append(f"vs champion v{champion_version}: the bootstrap {_ci(test)} does not lie above 0")
    return failures


def _passed(metric: str, scores: dict, tests: dict, champion_version: str | None) -> dict:
    """The verdict of a candidate that passed the gate: first_champion or promoted."""
    versus = ", ".join(f"{b.replace('_', ' ')} {_ci(tests[b])}" for b in BASELINES)
    champion = scores.get("champion")
    if champion is None:
        return {
            "outcome": "first_champion",
            "promote": True,
            "reason": f"first champion: {metric} {scores['candidate']:.4f} beats both baselines ({versus})",
        }
    return {
        "outcome": "promoted",
        "promote": True,
        "reason": (
            f"{metric} {scores['candidate']:.4f} beats champion v{champion_version} {champion:.4f} by "
            f"{tests['champion']['difference']:+.4f} ({_ci(tests['champion'])}) and both baselines ({versus})"
        ),
    }


APPROVE, KEEP = "Promote", "Keep the champion"


def close_calls(tests: dict, guards: dict, min_improvement: float) -> list[str]:
    """Why a decision is a close call (empty: it is not).

    tests: paired_bootstrap results of the candidate minus "persistence", "base_rate" and
    "champion" (None without one); guards: {metric: candidate minus persistence}. A close call:
    a CI that straddles its margin (0 for the baselines, max(0, min_improvement) for the
    champion), or a guard metric worse than persistence on the point estimate but not
    significantly (CI of the difference not entirely below 0)."""
    reasons = []
    for other, test in tests.items():
        margin = max(0.0, min_improvement) if other == "champion" else 0.0
        if test is not None and test["ci_low"] <= margin < test["ci_high"]:
            reasons.append(f"vs {other.replace('_', ' ')}: {_ci(test)} straddles {margin:+.4f}")
    for guard, test in guards.items():
        if test["difference"] < 0 <= test["ci_high"]:
            reasons.append(
                f"{guard} worse than persistence ({test['difference']:+.4f}, {_ci(test)}), not significantly"
            )
    return reasons


def needs_approval(mode: str, outcome: str, close: list[str]) -> bool:
    """Whether a decision waits for a person. mode: promotion.approval (never | borderline |
    always); outcome: decide()'s; close: close_calls(). Too little evidence and a forced
    promotion never wait (the gate or the user has already answered); `always` asks for every
    promotion and every close call, `borderline` for the close calls only."""
    if mode == "never" or outcome in ("insufficient_evidence", "forced"):
        return False
    if mode == "always":
        return bool(close) or outcome in ("first_champion", "promoted")
    return bool(close)


def with_answer(decision: dict, answer: dict | None) -> dict:
    """The decision once a person answered (answer: the HITLOperator result, chosen_options,
    responded_by_user (None when the timeout chose the default), responded_at), or unchanged
    when it did not wait. Approving promotes; rejecting or the timeout keeps the champion."""
    if not decision.get("approval", {}).get("required"):
        return decision
    if answer is None:
        raise ValueError(f"decision {decision['decision_id']} waits for approval but no answer was given")
    user = answer.get("responded_by_user")
    approved = list(answer.get("chosen_options") or []) == [APPROVE]
    who = f"{user.get('name') or user.get('id')}" if user else None
    if approved:
        outcome, verdict = "approved", f"approved by {who}"
    elif who is None:
        outcome, verdict = "approval_timeout", "no answer before the approval timeout: the champion stays"
    else:
        outcome, verdict = "declined", f"declined by {who}: the champion stays"
    responded_at = answer.get("responded_at")
    return {
        **decision,
        "outcome": outcome,
        "promoted": approved,
        "champion_after": decision["candidate_version"] if approved else decision["champion_before"],
        "reason": f"{verdict} (gate: {decision['outcome']}: {decision['reason']})",
        "approval": {
            **decision["approval"],
            "answer": (answer.get("chosen_options") or [None])[0],
            "responded_by": user,
            "responded_at": str(responded_at) if responded_at is not None else None,
        },
    }


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def approval_body(decision: dict, links: dict) -> str:
    """Markdown for the person asked to approve: both models' holdout metrics, the baselines,
    every CI, the holdout counts, why it is a close call, and links (name -> URL: the MLflow
    runs, the drift report)."""
    metrics = decision["holdout_metrics"]
    roles = [r for r in ("candidate", "champion", *BASELINES) if r in metrics]
    names = sorted({k for r in roles for k in metrics[r]})
    lines = [
        f"**{decision['model_name']} v{decision['candidate_version']}** vs champion "
        f"{'v' + decision['champion_before'] if decision['champion_before'] else '(none)'} "
        f"on the holdout {decision['holdout_start']} .. {decision['holdout_end']} "
        f"({decision['holdout_counts']['rows']} rows: {decision['holdout_counts']['positives']} positive, "
        f"{decision['holdout_counts']['negatives']} negative).",
        "",
        f"The gate says **{decision['outcome']}**: {decision['reason']}",
        "",
        "Close call: " + ("; ".join(decision["approval"]["close_calls"]) or "none (approval: always)"),
        "",
        "| metric | " + " | ".join(r.replace("_", " ") for r in roles) + " |",
        "|---" * (len(roles) + 1) + "|",
        *(f"| {n} | " + " | ".join(_fmt(metrics[r].get(n)) for r in roles) + " |" for n in names),
        "",
        f"Paired bootstrap, candidate minus other, on {decision['metric']}:",
        "",
        *(
            f"- {other.replace('_', ' ')}: {test['difference']:+.4f}, {_ci(test)}"
            for other, test in {**decision["baseline_tests"], "champion": decision["test"]}.items()
            if test
        ),
        *(f"- guard {g} vs persistence: {t['difference']:+.4f}, {_ci(t)}" for g, t in decision["guard_tests"].items()),
        "",
        *(f"- [{label}]({url})" for label, url in links.items() if url),
        "",
        f"**{APPROVE}** moves `champion` to v{decision['candidate_version']}; **{KEEP}** (also the answer "
        "when the timeout passes) leaves it where it is.",
    ]
    return "\n".join(lines)


def evaluate(y, probas: dict, settings) -> dict:
    """Scores, paired tests, guard tests and holdout counts of the candidate on one holdout.

    y: 0/1 labels (n,); probas: {"candidate", "persistence", "base_rate"[, "champion"]: P(1), (n,)};
    settings: the PipelineConfig. All bootstraps share one seed, hence the same resamples."""
    import numpy as np

    from mlops.training.metrics import SCORERS, classification_metrics, paired_bootstrap, score

    cfg = settings
    metric, threshold, promo = cfg.promotion.metric, cfg.model.decision_threshold, cfg.promotion
    y = np.asarray(y, dtype=int)

    def test(metric_name: str, other: str) -> dict:
        return paired_bootstrap(
            metric_name, y, probas["candidate"], probas[other],
            samples=promo.bootstrap_samples, confidence=promo.confidence, seed=cfg.model.random_seed,
            threshold=threshold,
        )  # fmt: skip

    higher_is_better = {value[1]: key for key, value in SCORERS.items()}  # brier -> neg_brier
    return {
        "scores": {role: score(metric, y, p, threshold) for role, p in probas.items()},
        "holdout_metrics": {role: classification_metrics(y, p, threshold) for role, p in probas.items()},
        "tests": {other: test(metric, other) if other in probas else None for other in (*BASELINES, "champion")},
        "guards": {g: test(higher_is_better[g], "persistence") for g in promo.guard_metrics},
        "counts": {"rows": int(len(y)), "positives": int(y.sum()), "negatives": int(len(y) - y.sum())},
        "minimums": {"positives": promo.min_holdout_positives, "negatives": promo.min_holdout_negatives},
    }


# ---------------------------------------------------------------- registry helpers


def _client():
    from mlops.io import registry

    return registry.client()


def load_version(name: str, version: str):
    """The sklearn Pipeline of a registered version."""
    import mlflow.sklearn

    from mlops.io.connections import configure_mlflow

    configure_mlflow()
    return mlflow.sklearn.load_model(f"models:/{name}/{version}")


def predict_positive(model, frame):
    """P(positive) for frame, selecting the columns that model was fitted on."""
    return model.predict_proba(frame[list(model.feature_names_in_)])[:, 1]


def holdout_cache_key(name: str, version: str, holdout) -> str:
    """Object key of a version's predictions on one holdout: the holdout is identified by a
    hash of its rows (every column, index excluded), so only the same model on the same rows
    hits it."""
    import hashlib

    import pandas as pd

    row_hashes = pd.util.hash_pandas_object(holdout, index=False).to_numpy()
    digest = hashlib.sha256(row_hashes.tobytes()).hexdigest()[:32]
    return f"{HOLDOUT_CACHE_PREFIX}{name}/{version}/{digest}.npy"


def holdout_probabilities(name: str, version: str, holdout, load=None):
    """P(positive) of a registered version on the holdout, float array (len(holdout),).

    Reused from the object store when this version already scored these very rows (the champion
    of the previous train run on an unchanged window, a retried propose): loading a model from
    the registry costs seconds, more than the whole bootstrap. Otherwise the model is loaded
    (`load(name, version)`, default load_version), run, and its predictions stored. The cache
    is an optimisation only: any error reading or writing it falls back to predicting."""
    import io

    import numpy as np
    from botocore.exceptions import BotoCoreError, ClientError

    from mlops.io.connections import s3_client

    key, bucket = holdout_cache_key(name, version, holdout), get_config().storage.bucket
    try:
        body = s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
        cached = np.load(io.BytesIO(body), allow_pickle=False)
        if cached.shape == (len(holdout),):
            log.info("v%s holdout predictions reused from s3://%s/%s", version, bucket, key)
            return cached
    except (BotoCoreError, ClientError, ValueError) as exc:
        log.info("no reusable holdout predictions of v%s (%s): predicting", version, exc)
    proba = np.asarray(predict_positive((load or load_version)(name, version), holdout), dtype="float64")
    buffer = io.BytesIO()
    np.save(buffer, proba, allow_pickle=False)
    try:
        s3_client().put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())
    except (BotoCoreError, ClientError) as exc:
        log.warning("could not store the holdout predictions of v%s: %s", version, exc)
    return proba


# ---------------------------------------------------------------- recording


def _now() -> str:
    from mlops.io.warehouse import now_text

    return now_text()


def recorded_decision(decision_id: str) -> dict | None:
    """A decision already in the warehouse (reruns of the same DAG run return it unchanged)."""
    from mlops.io import warehouse

    warehouse.ensure_schema()
    rows = warehouse.read_sql("model_decision.sql", {"decision_id": decision_id})
    if rows.empty:
        return None
    return json.loads(rows.iloc[0]["details"])


def record(decision: dict) -> None:
    """Write the decision to the warehouse table model_decisions (once per decision_id)."""
    import sqlalchemy as sa

    from mlops.io import warehouse

    warehouse.ensure_schema()
    row = {
        "decision_id": decision["decision_id"],
        "decided_at": decision["decided_at"],
        "model_name": decision["model_name"],
        "action": decision["action"],
        "outcome": decision["outcome"],
        "candidate_version": decision.get("candidate_version"),
        "champion_before": decision.get("champion_before"),
        "champion_after": decision.get("champion_after"),
        "forced": int(bool(decision.get("forced"))),
        "metric": decision.get("metric"),
        "candidate_score": decision.get("scores", {}).get("candidate"),
        "champion_score": decision.get("scores", {}).get("champion"),
        "persistence_score": decision.get("scores", {}).get("persistence"),
        "base_rate_score": decision.get("scores", {}).get("base_rate"),
        "difference": (decision.get("test") or {}).get("difference"),
        "ci_low": (decision.get("test") or {}).get("ci_low"),
        "ci_high": (decision.get("test") or {}).get("ci_high"),
        "reason": decision["reason"],
        "triggered_by": decision["triggered_by"],
        "dag_id": decision["dag_id"],
        "run_id": decision["run_id"],
        "details": json.dumps(decision, sort_keys=True),
    }
    with warehouse.engine().begin() as conn:
        conn.execute(sa.text(warehouse.render_sql("insert_model_decision.sql")), row)


# The only decision tags of a model version (the version shows them inline in MLflow); the
# readable summary goes to its description, every detail to the train run's artifact
# DECISION_ARTIFACT and the warehouse table model_decisions.
DECISION_TAGS = ("decision.action", "decision.outcome", "decision.at")
DECISION_ARTIFACT = "promotion/decision.json"


def _tag_version(client, name: str, version: str, decision: dict) -> None:
    """The latest decision about a version as 3 tags (5 when a person was asked: the answer and
    who gave it); its summary appended to the description."""
    tags = dict(zip(DECISION_TAGS, (decision["action"], decision["outcome"], decision["decided_at"]), strict=True))
    approval = decision.get("approval") or {}
    if approval.get("required"):
        user = approval.get("responded_by") or {}
        tags["decision.approval"] = str(approval.get("answer"))
        tags["decision.approved_by"] = str(user.get("name") or user.get("id") or "(timeout)")
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    _append_description(client, name, version, decision_summary(decision))


def _append_description(client, name: str, version: str, block: str) -> None:
    """Add block to the version's description once (a retried step does not repeat it)."""
    current = client.get_model_version(name, version).description or ""
    if block not in current:
        client.update_model_version(name, version, description=(current + "\n\n" + block).strip())


def _num(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def decision_summary(decision: dict) -> str:
    """A promotion or rollback decision as Markdown for the model version's description:
    outcome, reason, the metric of every role, the paired-bootstrap CIs against the champion
    and the baselines, the holdout rows and class counts, and where the full details are."""
    lines = [
        f"**{decision['action']}: {decision['outcome']}** ({decision['decided_at']} UTC, by "
        f"{decision['triggered_by']}, {decision['dag_id']} run {decision['run_id']})",
        f"- reason: {decision['reason']}",
    ]
    if decision.get("metric"):
        scores = decision.get("scores") or {}
        lines.append(
            f"- {decision['metric']}: " + ", ".join(f"{role.replace('_', ' ')} {_num(v)}" for role, v in scores.items())
        )
        tests = {"champion": decision.get("test"), **(decision.get("baseline_tests") or {})}
        for other, test in tests.items():
            if test:
                lines.append(f"- candidate - {other.replace('_', ' ')}: {test['difference']:+.4f}, {_ci(test)}")
        counts = decision.get("holdout_counts") or {}
        lines.append(
            f"- holdout: {decision.get('n_holdout')} rows {decision.get('holdout_start')}..{decision.get('holdout_end')}, "
            f"{counts.get('positives')} positive / {counts.get('negatives')} negative"
        )
    if decision.get("parent_run_id"):
        lines.append(f"- details: artifact `{DECISION_ARTIFACT}` of MLflow run {decision['parent_run_id']}")
    return "\n".join(lines)


# ---------------------------------------------------------------- intents (crash safety)


def _write_intent(client, name: str, decision: dict) -> None:
    """The whole decision as the registered model's pending_decision tag, before any alias moves."""
    client.set_registered_model_tag(name, PENDING_DECISION_TAG, json.dumps(decision, sort_keys=True))
    _crash_point("intent_written")


def _apply(client, name: str, decision: dict) -> dict:
    """Carry out a decided promotion or rollback; every step is idempotent, the intent is cleared last."""
    version, before = decision["candidate_version"], decision.get("champion_before")
    if decision["action"] == "rollback":
        client.set_registered_model_alias(name, CHAMPION, version)
        _crash_point("alias_moved")
        _append_description(
            client, name, before,
            f"**rolled back** ({decision['decided_at']} UTC): champion moved to v{version} by {decision['triggered_by']}",
        )  # fmt: skip
    elif decision["promoted"]:
        from mlops.io import registry

        client.set_model_version_tag(name, version, PREVIOUS_CHAMPION_TAG, before or "")
        client.set_registered_model_alias(name, CHAMPION, version)
        _crash_point("alias_moved")
        # The challenger became the champion: no version is waiting to be compared.
        if registry.alias_version(name, CHALLENGER, client) == version:
            client.delete_registered_model_alias(name, CHALLENGER)
    _tag_version(client, name, version, decision)
    if decision["action"] == "promote":
        if before is not None:
            _append_description(
                client,
                name,
                before,
                f"**challenged** ({decision['decided_at']} UTC) by v{version}: {decision['outcome']}",
            )
        _log_to_parent_run(decision["parent_run_id"], decision)
    record(decision)
    _crash_point("recorded")
    client.delete_registered_model_tag(name, PENDING_DECISION_TAG)
    return decision


def _resume(client, name: str, decision_id: str) -> dict | None:
    """The decision of this DAG run if it was recorded or is pending (then completed first).
    A pending decision of another run (whose retries ran out) is completed too: its alias may
    already have moved, and half a decision is worse than the one that was taken."""
    from mlops.io import registry

    pending_json = registry.read_model(name, client)["tags"].get(PENDING_DECISION_TAG)
    pending = json.loads(pending_json) if pending_json else None
    if pending is not None:
        log.warning("completing the pending decision %s: %s", pending["decision_id"], pending["reason"])
        _apply(client, name, pending)
        if pending["decision_id"] == decision_id:
            return pending
    return recorded_decision(decision_id)


# ---------------------------------------------------------------- promote (train's last task)


def promote(snapshot: dict, train_result: dict, registered: dict, settings: dict, trigger: dict) -> dict:
    """Compare the challenger with the champion and the baselines on the holdout, move the alias or
    refuse; record why (crash-safe, see the module docstring). Returns the decision.

    Raises registry.RegistryUnavailable when the registry cannot say who is champion, ValueError
    when the decision needs a person's approval (the train DAG asks for it between propose and
    complete)."""
    return complete(propose(snapshot, train_result, registered, settings, trigger), None)


def propose(snapshot: dict, train_result: dict, registered: dict, settings: dict, trigger: dict) -> dict:
    """The decision about the challenger, not yet carried out: the gate's verdict plus
    "approval" {"mode", "required", "close_calls", "body" (markdown for the person asked)}.
    A decision this DAG run already took (recorded, or pending and now completed) comes back
    with "final": True. Raises registry.RegistryUnavailable like promote."""
    from airflow.sdk.exceptions import AirflowFailException

    from mlops.io import registry
    from mlops.training import pipeline as training

    cfg = get_config()
    dataset = cfg.dataset
    name, version = registered["model_name"], registered["version"]
    decision_id = f"{trigger['dag_id']}/{trigger['run_id']}"
    client = _client()
    earlier = _resume(client, name, decision_id)
    if earlier is not None:
        log.info("decision for %s already taken: %s", decision_id, earlier["outcome"])
        return {**earlier, "final": True}
    champion_version = registry.champion_version(name, client)  # an outage fails here, before any work
    if champion_version == version:
        raise AirflowFailException(
            f"v{version} of {name!r} is already champion but no decision of {decision_id} is recorded or pending"
        )

    _, holdout = training.load_split(snapshot, dataset, cfg.model.holdout_fraction, snapshot["data_digest"])
    evidence = _holdout_evidence(name, version, champion_version, holdout, train_result, cfg)
    metric = cfg.promotion.metric
    verdict = decide(
        metric, evidence["scores"], evidence["tests"], evidence["guards"], evidence["counts"], evidence["minimums"],
        cfg.promotion.min_improvement, force=settings["force_promote"], champion_version=champion_version,
    )  # fmt: skip
    decision = _decision_record(
        decision_id, name, version, champion_version, verdict, evidence, holdout, train_result, trigger, cfg
    )
    close = close_calls(evidence["tests"], evidence["guards"], cfg.promotion.min_improvement)
    mode = cfg.promotion.approval
    decision["approval"] = {
        "mode": mode,
        "required": needs_approval(mode, verdict["outcome"], close),
        "close_calls": close,
    }
    if decision["approval"]["required"]:
        decision["approval"]["body"] = approval_body(decision, _links(client, decision, registered, trigger))
    log.info(
        "decision %s: %s (approval needed: %s)", verdict["outcome"], verdict["reason"], decision["approval"]["required"]
    )
    return decision


def _holdout_evidence(name: str, version: str, champion_version: str | None, holdout, train_result: dict, cfg) -> dict:
    """evaluate() of the candidate, the baselines and the champion (if any) on the holdout."""
    from mlops.training.metrics import base_rate_proba, persistence_proba

    dataset = cfg.dataset
    probas = {
        "candidate": holdout_probabilities(name, version, holdout),
        "persistence": persistence_proba(holdout, dataset),
        "base_rate": base_rate_proba(len(holdout), train_result["baselines"]["positive_rate"]),
    }
    if champion_version is not None:
        probas["champion"] = holdout_probabilities(name, champion_version, holdout)
    return evaluate(holdout[dataset.label.name].to_numpy(), probas, cfg)


def _decision_record(
    decision_id: str,
    name: str,
    version: str,
    champion_version: str | None,
    verdict: dict,
    evidence: dict,
    holdout,
    train_result: dict,
    trigger: dict,
    cfg,
) -> dict:
    """The decision as recorded (without its approval): verdict, evidence, holdout and trigger."""
    dataset = cfg.dataset
    metric = cfg.promotion.metric
    return {
        "decision_id": decision_id,
        "decided_at": _now(),
        "model_name": name,
        "action": "promote",
        "outcome": verdict["outcome"],
        "promoted": verdict["promote"],
        "forced": verdict["outcome"] == "forced",
        "reason": verdict["reason"],
        "candidate_version": version,
        "champion_before": champion_version,
        "champion_after": version if verdict["promote"] else champion_version,
        "metric": metric,
        "min_improvement": cfg.promotion.min_improvement,
        "scores": {role: evidence["scores"].get(role) for role in ("candidate", "champion", *BASELINES)},
        "holdout_metrics": evidence["holdout_metrics"],
        "test": evidence["tests"]["champion"],
        "baseline_tests": {b: evidence["tests"][b] for b in BASELINES},
        "guard_tests": evidence["guards"],
        "holdout_counts": evidence["counts"],
        "evidence_minimums": evidence["minimums"],
        "n_holdout": int(len(holdout)),
        "holdout_start": holdout[dataset.time_column].min().strftime("%Y-%m-%d %H:%M:%S"),
        "holdout_end": holdout[dataset.time_column].max().strftime("%Y-%m-%d %H:%M:%S"),
        "triggered_by": trigger["triggered_by"],
        "trigger_reason": trigger["reason"],
        "dag_id": trigger["dag_id"],
        "run_id": trigger["run_id"],
        "parent_run_id": train_result["parent_run_id"],
    }


def complete(decision: dict, answer: dict | None) -> dict:
    """Carry out a proposed decision (crash-safe: the intent is written before any alias moves).
    answer: the approval task's result when the decision waited for one, else None. A champion
    that moved while the decision waited (a rollback) makes it `stale`: nothing moves.
    Returns the decision as recorded."""
    from mlops.io import registry

    if decision.pop("final", False):
        return decision
    name, client = decision["model_name"], _client()
    earlier = _resume(client, name, decision["decision_id"])
    if earlier is not None:
        return earlier
    decision = with_answer(decision, answer)
    decision["approval"] = {k: v for k, v in decision["approval"].items() if k != "body"}
    if decision["approval"]["required"]:
        current = registry.champion_version(name, client)
        if current != decision["champion_before"]:
            decision = {
                **decision, "outcome": "stale", "promoted": False, "champion_after": current,
                "reason": f"the champion moved to v{current} while the decision waited: {decision['reason']}",
            }  # fmt: skip
    _write_intent(client, name, decision)
    return _apply(client, name, decision)


def _links(client, decision: dict, registered: dict, trigger: dict) -> dict:
    """{label: URL} of the MLflow runs (candidate, training parent, champion) and the drift report."""
    from mlops.io.connections import mlflow_tracking_uri

    base = mlflow_tracking_uri().rstrip("/")

    def run_url(run_id: str | None) -> str | None:
        if not run_id:
            return None
        return f"{base}/#/experiments/{client.get_run(run_id).info.experiment_id}/runs/{run_id}"

    champion = decision["champion_before"]
    champion_run = client.get_model_version(decision["model_name"], champion).run_id if champion else None
    return {
        f"MLflow run of the candidate v{decision['candidate_version']}": run_url(registered.get("run_id")),
        "MLflow training run (all candidates, baselines)": run_url(decision["parent_run_id"]),
        f"MLflow run of the champion v{champion}": run_url(champion_run),
        "drift report that triggered this run": trigger.get("report_uri"),
    }


def _log_to_parent_run(parent_run_id: str, decision: dict) -> None:
    from mlops.io.connections import configure_mlflow

    mlflow = configure_mlflow()
    client = mlflow.MlflowClient()
    client.set_tag(parent_run_id, "promotion.outcome", decision["outcome"])
    client.set_tag(parent_run_id, "promotion.reason", decision["reason"][:4000])
    client.log_dict(parent_run_id, decision, DECISION_ARTIFACT)


# ---------------------------------------------------------------- rollback


def rollback(target_version: str | None, trigger: dict) -> dict:
    """Move `champion` back to target_version, by default the version it replaced; record it
    (crash-safe like promote). Raises AirflowFailException when there is nothing to roll back
    to, registry.RegistryUnavailable when the registry cannot say who is champion."""
    from airflow.sdk.exceptions import AirflowFailException
    from mlflow.exceptions import MlflowException

    from mlops.io import registry

    name = get_config().model.registered_name
    decision_id = f"{trigger['dag_id']}/{trigger['run_id']}"
    client = _client()
    earlier = _resume(client, name, decision_id)
    if earlier is not None:
        return earlier
    current = registry.champion_version(name, client)
    if current is None:
        raise AirflowFailException(f"model {name!r} has no champion: nothing to roll back")
    if target_version in (None, ""):
        target_version = client.get_model_version(name, current).tags.get(PREVIOUS_CHAMPION_TAG) or None
        if target_version is None:
            raise AirflowFailException(
                f"champion v{current} of {name!r} has no recorded previous champion; pass params.target_version"
            )
    target_version = str(target_version)
    if target_version == current:
        raise AirflowFailException(f"version {target_version} of {name!r} is already the champion")
    try:
        client.get_model_version(name, target_version)
    except MlflowException as exc:
        raise AirflowFailException(f"model {name!r} has no version {target_version}: {exc}") from None

    decision = {
        "decision_id": decision_id,
        "decided_at": _now(),
        "model_name": name,
        "action": "rollback",
        "outcome": "rolled_back",
        "promoted": True,
        "forced": True,
        "reason": f"champion moved back from v{current} to v{target_version}"
        + (f": {trigger['reason']}" if trigger.get("reason") else ""),
        "candidate_version": target_version,
        "champion_before": current,
        "champion_after": target_version,
        "triggered_by": trigger["triggered_by"],
        "trigger_reason": trigger.get("reason", ""),
        "dag_id": trigger["dag_id"],
        "run_id": trigger["run_id"],
    }
    _write_intent(client, name, decision)
    _apply(client, name, decision)
    log.info("rollback: %s", decision["reason"])
    return decision
