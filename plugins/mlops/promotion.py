"""Gated promotion of the challenger, and rollback of the champion.

Policy (the TFX Evaluator/Pusher contract): the newly registered version has the alias
`challenger`. It is scored together with the current `champion` on the SAME most recent
holdout. It becomes `champion` only if
  * it beats the champion on promotion.metric by more than promotion.min_improvement, AND the
    paired bootstrap confidence interval of the difference (holdout rows resampled together
    for both models, seeded) lies above zero; and
  * it beats both baselines (persistence and base rate) on that metric.
The first model ever becomes champion if it beats both baselines. force_promote overrides
the gate (recorded as such). Every decision - both models' metrics, the test, the reason and
the trigger - goes to the model version's tags and description and to the warehouse table
model_decisions. Rollback moves `champion` back to the previous champion (or a given version).
"""

from __future__ import annotations

import datetime as dt
import json
import logging

from mlops.config import get_config
from mlops.registry import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION_TAG

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- the decision (pure)


def decide(
    metric: str,
    challenger: float,
    champion: float | None,
    persistence: float,
    base_rate: float,
    test: dict | None,
    min_improvement: float,
    force: bool = False,
    champion_version: str | None = None,
) -> dict:
    """Apply the promotion policy to scores (higher is better). Returns outcome, promote, reason."""
    failures = []
    for name, value in (("persistence", persistence), ("base rate", base_rate)):
        if not challenger > value:
            failures.append(f"{metric} {challenger:.4f} does not beat the {name} baseline ({value:.4f})")
    if champion is not None:
        if test is None:
            raise ValueError("a paired test is required when there is a champion")
        diff = test["difference"]
        if not diff > min_improvement:
            failures.append(
                f"{metric} {challenger:.4f} vs champion v{champion_version} {champion:.4f}: difference {diff:+.4f} "
                f"is not above the required margin {min_improvement:+.4f}"
            )
        if not test["ci_low"] > 0:
            failures.append(
                f"the {test['confidence']:.0%} bootstrap CI of the difference [{test['ci_low']:+.4f}, {test['ci_high']:+.4f}] "
                "does not lie above 0"
            )
    if not failures:
        if champion is None:
            return {
                "outcome": "first_champion",
                "promote": True,
                "reason": f"first champion: {metric} {challenger:.4f} beats both baselines",
            }
        return {
            "outcome": "promoted",
            "promote": True,
            "reason": (
                f"{metric} {challenger:.4f} beats champion v{champion_version} {champion:.4f} by {test['difference']:+.4f} "
                f"(CI [{test['ci_low']:+.4f}, {test['ci_high']:+.4f}]) and both baselines"
            ),
        }
    gate = "; ".join(failures)
    if force:
        return {
            "outcome": "forced",
            "promote": True,
            "reason": f"force_promote=True overrode the gate, which said: {gate}",
        }
    return {"outcome": "rejected", "promote": False, "reason": gate}


# ---------------------------------------------------------------- registry helpers


def _client():
    from mlops import registry

    return registry.client()


def alias_version(client, name: str, alias: str) -> str | None:
    """The version number carrying alias, or None (mlops.registry's policy: errors raise)."""
    from mlops import registry

    return registry.alias_version(name, alias, client)


def load_version(name: str, version: str):
    """The sklearn Pipeline of a registered version."""
    import mlflow.sklearn

    from mlops.connections import configure_mlflow

    configure_mlflow()
    return mlflow.sklearn.load_model(f"models:/{name}/{version}")


def predict_positive(model, frame):
    """P(positive) for frame, selecting the columns that model was fitted on."""
    return model.predict_proba(frame[list(model.feature_names_in_)])[:, 1]


# ---------------------------------------------------------------- recording


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def recorded_decision(decision_id: str) -> dict | None:
    """A decision already in the warehouse (reruns of the same DAG run return it unchanged)."""
    from mlops import warehouse

    warehouse.ensure_schema()
    rows = warehouse.read_sql("model_decision.sql", {"decision_id": decision_id})
    if rows.empty:
        return None
    return json.loads(rows.iloc[0]["details"])


def record(decision: dict) -> None:
    """Write the decision to the warehouse table model_decisions (once per decision_id)."""
    import sqlalchemy as sa

    from mlops import warehouse

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


def _tag_version(client, name: str, version: str, decision: dict) -> None:
    """The latest decision about a version as tags; every decision appended to its description."""
    tags = {
        "decision.action": decision["action"],
        "decision.outcome": decision["outcome"],
        "decision.reason": decision["reason"][:4000],
        "decision.at": decision["decided_at"],
        "decision.triggered_by": decision["triggered_by"],
        "decision.run_id": decision["run_id"],
        "decision.forced": str(bool(decision.get("forced"))).lower(),
        "decision.champion_before": str(decision.get("champion_before") or ""),
    }
    if decision.get("metric"):
        tags["decision.metric"] = decision["metric"]
        for role, value in decision.get("scores", {}).items():
            if value is not None:
                tags[f"decision.{role}_score"] = f"{value:.6f}"
    if decision.get("test"):
        for key in ("difference", "ci_low", "ci_high"):
            tags[f"decision.{key}"] = f"{decision['test'][key]:.6f}"
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    current = client.get_model_version(name, version).description or ""
    line = f"[{decision['decided_at']} UTC] {decision['action']} {decision['outcome']}: {decision['reason']} (by {decision['triggered_by']}, run {decision['run_id']})"
    if line not in current:
        client.update_model_version(name, version, description=(current + "\n\n" + line).strip())


# ---------------------------------------------------------------- promote (train's last task)


def promote(window: dict, snapshot: dict, train_result: dict, registered: dict, settings: dict, trigger: dict) -> dict:
    """Compare challenger and champion on the holdout, move the alias or refuse; record why."""
    from mlops import training
    from mlops.metrics import base_rate_proba, classification_metrics, paired_bootstrap, persistence_proba, score

    cfg = get_config()
    dataset, threshold, metric = cfg.dataset, cfg.model.decision_threshold, cfg.promotion.metric
    name, version = registered["model_name"], registered["version"]
    decision_id = f"{trigger['dag_id']}/{trigger['run_id']}"
    earlier = recorded_decision(decision_id)
    if earlier is not None:
        log.info("decision for %s already recorded: %s", decision_id, earlier["outcome"])
        return earlier

    client = _client()
    _, holdout = training.load_split(window, dataset, cfg.model.holdout_fraction, snapshot["data_digest"])
    y = holdout[dataset.label.name].to_numpy()
    probas = {
        "candidate": predict_positive(load_version(name, version), holdout),
        "persistence": persistence_proba(holdout, dataset),
        "base_rate": base_rate_proba(len(holdout), train_result["baselines"]["positive_rate"]),
    }
    champion_version = alias_version(client, name, CHAMPION)
    if champion_version == version:
        champion_version = None  # already champion (a cleared, re-run task): nothing to compare
    if champion_version is not None:
        probas["champion"] = predict_positive(load_version(name, champion_version), holdout)

    scores = {role: score(metric, y, p, threshold) for role, p in probas.items()}
    metrics = {role: classification_metrics(y, p, threshold) for role, p in probas.items()}
    test = None
    if champion_version is not None:
        test = paired_bootstrap(
            metric,
            y,
            probas["candidate"],
            probas["champion"],
            samples=cfg.promotion.bootstrap_samples,
            confidence=cfg.promotion.confidence,
            seed=cfg.model.random_seed,
            threshold=threshold,
        )
    verdict = decide(
        metric,
        scores["candidate"],
        scores.get("champion"),
        scores["persistence"],
        scores["base_rate"],
        test,
        cfg.promotion.min_improvement,
        force=settings["force_promote"],
        champion_version=champion_version,
    )
    champion_after = version if verdict["promote"] else champion_version
    decision = {
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
        "champion_after": champion_after,
        "metric": metric,
        "min_improvement": cfg.promotion.min_improvement,
        "scores": {role: scores.get(role) for role in ("candidate", "champion", "persistence", "base_rate")},
        "holdout_metrics": metrics,
        "test": test,
        "n_holdout": int(len(holdout)),
        "holdout_start": holdout[dataset.time_column].min().strftime("%Y-%m-%d %H:%M:%S"),
        "holdout_end": holdout[dataset.time_column].max().strftime("%Y-%m-%d %H:%M:%S"),
        "triggered_by": trigger["triggered_by"],
        "trigger_reason": trigger["reason"],
        "dag_id": trigger["dag_id"],
        "run_id": trigger["run_id"],
    }
    log.info("decision %s: %s", verdict["outcome"], verdict["reason"])

    if verdict["promote"]:
        client.set_model_version_tag(name, version, PREVIOUS_CHAMPION_TAG, champion_version or "")
        client.set_registered_model_alias(name, CHAMPION, version)
        # The challenger became the champion: no version is waiting to be compared.
        if alias_version(client, name, CHALLENGER) == version:
            client.delete_registered_model_alias(name, CHALLENGER)
    _tag_version(client, name, version, decision)
    if champion_version is not None:
        client.set_model_version_tag(
            name, champion_version, "decision.last_challenged_by", f"v{version}: {verdict['outcome']}"
        )
    record(decision)
    _log_to_parent_run(train_result["parent_run_id"], decision)
    return decision


def _log_to_parent_run(parent_run_id: str, decision: dict) -> None:
    from mlops.connections import configure_mlflow

    mlflow = configure_mlflow()
    client = mlflow.MlflowClient()
    client.set_tag(parent_run_id, "promotion.outcome", decision["outcome"])
    client.set_tag(parent_run_id, "promotion.reason", decision["reason"][:4000])
    client.log_dict(parent_run_id, decision, "promotion/decision.json")


# ---------------------------------------------------------------- rollback


def rollback(target_version: str | None, trigger: dict) -> dict:
    """Move `champion` back to target_version, by default the version it replaced; record it."""
    from airflow.sdk.exceptions import AirflowFailException
    from mlflow.exceptions import MlflowException

    name = get_config().model.registered_name
    decision_id = f"{trigger['dag_id']}/{trigger['run_id']}"
    earlier = recorded_decision(decision_id)
    if earlier is not None:
        return earlier
    client = _client()
    current = alias_version(client, name, CHAMPION)
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

    client.set_registered_model_alias(name, CHAMPION, target_version)
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
    _tag_version(client, name, target_version, decision)
    client.set_model_version_tag(
        name,
        current,
        "decision.rolled_back",
        f"{decision['decided_at']} to v{target_version} by {trigger['triggered_by']}",
    )
    record(decision)
    log.info("rollback: %s", decision["reason"])
    return decision
