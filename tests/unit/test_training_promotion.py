"""The promotion policy, the paired bootstrap and the metrics, on inputs with known answers."""

import numpy as np
import pytest

from mlops.config import load_config
from mlops.training.metrics import base_rate_proba, classification_metrics, paired_bootstrap, persistence_proba, score
from mlops.training.promotion import decide, decision_summary, evaluate

CFG = load_config(environ={})
DATASET = CFG.dataset


ENOUGH = {"positives": 100, "negatives": 900}
MINIMUMS = {"positives": 30, "negatives": 30}


def _test(diff, low, high):
    return {"difference": diff, "ci_low": low, "ci_high": high, "confidence": 0.95}


SIGNIFICANT = _test(0.1, 0.05, 0.15)
NO_GUARDS = {}


def _decide(candidate, champion, tests, guards=NO_GUARDS, counts=ENOUGH, min_improvement=0.0, force=False):
    scores = {"candidate": candidate, "champion": champion, "persistence": 0.7, "base_rate": 0.5}
    all_tests = {"persistence": SIGNIFICANT, "base_rate": SIGNIFICANT, "champion": None, **tests}
    return decide(
        "roc_auc", scores, all_tests, guards, counts, MINIMUMS, min_improvement, force=force, champion_version="1"
    )


def test_first_model_becomes_champion_only_with_evidence_against_both_baselines():
    ok = _decide(0.9, None, {})
    assert ok["promote"] and ok["outcome"] == "first_champion" and "CI" in ok["reason"]
    # a better point estimate than persistence is not enough: the CI must lie above 0
    straddles = _decide(0.75, None, {"persistence": _test(0.05, -0.02, 0.12)})
    assert not straddles["promote"] and straddles["outcome"] == "rejected"
    assert "persistence baseline" in straddles["reason"] and "does not lie above 0" in straddles["reason"]
    base = _decide(0.9, None, {"base_rate": _test(0.0, -0.01, 0.01)})
    assert not base["promote"] and "base rate baseline" in base["reason"]


def test_too_few_positives_is_insufficient_evidence_even_for_the_first_model():
    result = _decide(0.95, None, {}, counts={"positives": 10, "negatives": 500})
    assert result == {
        "outcome": "insufficient_evidence",
        "promote": False,
        "reason": "too little evidence: 10 positive holdout rows (promotion.min_holdout_positives = 30)",
    }
    assert _decide(0.95, None, {}, counts={"positives": 10, "negatives": 5}, force=True)["outcome"] == "forced"


def test_a_guard_metric_significantly_worse_than_persistence_blocks_promotion():
    worse_brier = {"brier": _test(-0.2, -0.25, -0.15)}
    result = _decide(0.95, None, {}, guards=worse_brier)
    assert not result["promote"] and "significantly worse than persistence on brier" in result["reason"]
    not_significant = {"brier": _test(-0.01, -0.03, 0.01)}
    assert _decide(0.95, None, {}, guards=not_significant)["promote"]


def test_challenger_needs_margin_and_ci_above_zero():
    assert _decide(0.93, 0.90, {"champion": _test(0.03, 0.01, 0.05)})["outcome"] == "promoted"
    # the point estimate is better but the interval includes 0: not significant
    result = _decide(0.91, 0.90, {"champion": _test(0.01, -0.01, 0.03)})
    assert not result["promote"] and "does not lie above 0" in result["reason"]
    # significant but below the configured margin
    result = _decide(0.91, 0.90, {"champion": _test(0.01, 0.005, 0.015)}, min_improvement=0.02)
    assert not result["promote"] and "margin" in result["reason"]


def test_beating_the_champion_is_not_enough_when_persistence_is_better():
    result = _decide(0.70, 0.65, {"champion": _test(0.05, 0.02, 0.08), "persistence": _test(-0.05, -0.08, -0.02)})
    assert not result["promote"] and "persistence" in result["reason"]


def test_force_overrides_and_says_what_the_gate_said():
    result = _decide(0.85, 0.90, {"champion": _test(-0.05, -0.08, -0.02)}, force=True)
    assert result["promote"] and result["outcome"] == "forced" and "champion v1" in result["reason"]


def _holdout(n=1500, seed=0):
    """Labels with 20% positives and a persistence forecast right 90% of the time."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(int)
    persistence = np.where(rng.random(n) < 0.9, y, 1 - y).astype(float)
    return rng, y, persistence


def test_known_answer_better_auc_but_much_worse_brier_than_persistence_is_not_promoted():
    rng, y, persistence = _holdout()
    # ranks nearly perfectly (ROC AUC ~0.99 vs persistence ~0.9) but every probability is near 0.5
    squashed = 0.45 + 0.1 * y + rng.normal(0, 0.02, len(y))
    evidence = evaluate(y, {"candidate": squashed, "persistence": persistence, "base_rate": np.full(len(y), 0.2)}, CFG)
    assert evidence["scores"]["candidate"] > evidence["scores"]["persistence"] + 0.05
    assert evidence["tests"]["persistence"]["ci_low"] > 0
    assert evidence["guards"]["brier"]["ci_high"] < 0
    verdict = decide("roc_auc", evidence["scores"], evidence["tests"], evidence["guards"], evidence["counts"],
                     evidence["minimums"], 0.0)  # fmt: skip
    assert verdict["outcome"] == "rejected" and "significantly worse than persistence on brier" in verdict["reason"]


def test_known_answer_a_clearly_better_calibrated_model_is_promoted():
    rng, y, persistence = _holdout()
    good = np.clip(0.05 + 0.9 * y + rng.normal(0, 0.05, len(y)), 0, 1)
    evidence = evaluate(y, {"candidate": good, "persistence": persistence, "base_rate": np.full(len(y), 0.2)}, CFG)
    assert evidence["counts"] == {"rows": 1500, "positives": int(y.sum()), "negatives": 1500 - int(y.sum())}
    verdict = decide("roc_auc", evidence["scores"], evidence["tests"], evidence["guards"], evidence["counts"],
                     evidence["minimums"], 0.0)  # fmt: skip
    assert verdict["outcome"] == "first_champion"


def test_paired_bootstrap_of_identical_models_is_exactly_zero():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = rng.random(300)
    test = paired_bootstrap("roc_auc", y, p, p, samples=200, confidence=0.95, seed=1, threshold=0.5)
    assert test["difference"] == 0 and test["ci_low"] == 0 and test["ci_high"] == 0


def test_paired_bootstrap_separates_a_clearly_better_model_and_is_seeded():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    good = np.clip(y * 0.6 + rng.random(400) * 0.4, 0, 1)
    bad = rng.random(400)
    test = paired_bootstrap("roc_auc", y, good, bad, samples=300, confidence=0.95, seed=3, threshold=0.5)
    assert test["ci_low"] > 0.2
    assert test == paired_bootstrap("roc_auc", y, good, bad, samples=300, confidence=0.95, seed=3, threshold=0.5)
    reverse = paired_bootstrap("neg_brier", y, bad, good, samples=300, confidence=0.95, seed=3, threshold=0.5)
    assert reverse["ci_high"] < 0


def test_metrics_on_a_known_answer():
    y = np.array([1, 1, 0, 0])
    p = np.array([0.9, 0.4, 0.6, 0.1])
    m = classification_metrics(y, p, threshold=0.5)
    assert m["accuracy"] == 0.5 and m["precision"] == 0.5 and m["recall"] == 0.5
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["brier"] == pytest.approx((0.01 + 0.36 + 0.36 + 0.01) / 4)
    assert score("neg_brier", y, p, 0.5) == pytest.approx(-m["brier"])


def test_baselines():
    import pandas as pd

    frame = pd.DataFrame({"Current_weather_condition": [1, 0, 1]})
    assert persistence_proba(frame, DATASET).tolist() == [1.0, 0.0, 1.0]
    assert base_rate_proba(3, 0.25).tolist() == [0.25, 0.25, 0.25]
    # a hard 0/1 forecast has a finite log loss (clipped), not infinity
    assert np.isfinite(classification_metrics([0, 1], [1.0, 0.0], 0.5)["log_loss"])


def test_the_decision_summary_reads_as_outcome_reason_scores_cis_and_holdout():
    test = {"difference": 0.0123, "ci_low": 0.002, "ci_high": 0.021, "confidence": 0.95}
    decision = {
        "action": "promote", "outcome": "promoted", "decided_at": "2026-11-30 01:00:00", "triggered_by": "drift",
        "dag_id": "train", "run_id": "drift__x", "reason": "beats the champion", "metric": "roc_auc",
        "scores": {"candidate": 0.81, "champion": 0.8, "persistence": 0.7, "base_rate": 0.5},
        "test": test, "baseline_tests": {"persistence": {**test, "difference": 0.11}, "base_rate": None},
        "holdout_counts": {"rows": 500, "positives": 120, "negatives": 380}, "n_holdout": 500,
        "holdout_start": "2016-01-01 00:00:00", "holdout_end": "2016-02-01 00:00:00", "parent_run_id": "abc",
    }  # fmt: skip
    text = decision_summary(decision)
    assert text.splitlines()[0].startswith("**promote: promoted** (2026-11-30 01:00:00 UTC, by drift")
    assert "- reason: beats the champion" in text
    assert "- roc_auc: candidate 0.8100, champion 0.8000, persistence 0.7000, base rate 0.5000" in text
    assert "- candidate - champion: +0.0123, 95% CI [+0.0020, +0.0210]" in text
    assert "- candidate - persistence: +0.1100" in text and "candidate - base rate" not in text
    assert "- holdout: 500 rows 2016-01-01 00:00:00..2016-02-01 00:00:00, 120 positive / 380 negative" in text
    assert "`promotion/decision.json` of MLflow run abc" in text


def test_a_rollback_summary_has_no_metric_lines():
    decision = {
        "action": "rollback", "outcome": "rolled_back", "decided_at": "2026-11-30 01:00:00", "triggered_by": "manual",
        "dag_id": "rollback_champion", "run_id": "manual__y", "reason": "champion moved back from v3 to v2",
    }  # fmt: skip
    assert decision_summary(decision).splitlines() == [
        "**rollback: rolled_back** (2026-11-30 01:00:00 UTC, by manual, rollback_champion run manual__y)",
        "- reason: champion moved back from v3 to v2",
    ]


# ---------------------------------------------------------------- human approval (promotion.approval)

from mlops.training.promotion import APPROVE, KEEP, approval_body, close_calls, needs_approval, with_answer  # noqa: E402

CLEAR = {"persistence": SIGNIFICANT, "base_rate": SIGNIFICANT, "champion": _test(0.05, 0.02, 0.08)}


def test_which_decisions_are_close_calls():
    assert close_calls(CLEAR, {"brier": _test(0.01, 0.005, 0.02)}, 0.0) == []
    # the champion CI straddles 0; a first model has no champion test
    straddle = close_calls({**CLEAR, "champion": _test(0.01, -0.01, 0.03)}, {}, 0.0)
    assert straddle == ["vs champion: 95% CI [-0.0100, +0.0300] straddles +0.0000"]
    assert close_calls({**CLEAR, "champion": None, "persistence": _test(0.02, -0.01, 0.05)}, {}, 0.0)
    # significant above 0 but straddling the configured margin of 0.02
    assert close_calls({**CLEAR, "champion": _test(0.03, 0.01, 0.05)}, {}, 0.02)
    # a guard worse on the point estimate, not significantly: questioned; significantly worse: clear (rejected)
    assert close_calls(CLEAR, {"brier": _test(-0.01, -0.03, 0.01)}, 0.0) == [
        "brier worse than persistence (-0.0100, 95% CI [-0.0300, +0.0100]), not significantly"
    ]
    assert close_calls(CLEAR, {"brier": _test(-0.2, -0.25, -0.15)}, 0.0) == []
    # clearly worse than the champion: not a close call
    assert close_calls({**CLEAR, "champion": _test(-0.05, -0.08, -0.02)}, {}, 0.0) == []


@pytest.mark.parametrize(
    ("mode", "outcome", "is_close", "expected"),
    [
        ("never", "promoted", True, False),
        ("never", "rejected", True, False),
        ("borderline", "promoted", False, False),
        ("borderline", "rejected", False, False),
        ("borderline", "rejected", True, True),
        ("borderline", "promoted", True, True),
        ("borderline", "insufficient_evidence", True, False),
        ("borderline", "forced", True, False),
        ("always", "promoted", False, True),
        ("always", "first_champion", False, True),
        ("always", "rejected", False, False),
        ("always", "rejected", True, True),
    ],
)
def test_who_waits_for_a_person_under_each_mode(mode, outcome, is_close, expected):
    close = ["vs champion: straddles"]
    assert needs_approval(mode, outcome, close if is_close else []) is expected


def _waiting_decision():
    return {
        "decision_id": "train/r1", "model_name": "rain", "candidate_version": "3", "champion_before": "2",
        "champion_after": "2", "outcome": "rejected", "promoted": False,
        "reason": "vs champion v2: the bootstrap 95% CI [-0.0100, +0.0300] does not lie above 0",
        "approval": {"mode": "borderline", "required": True, "close_calls": ["vs champion: straddles"]},
    }  # fmt: skip


def test_the_answer_decides_and_is_recorded_with_who_gave_it():
    decision = _waiting_decision()
    approved = with_answer(
        decision, {"chosen_options": [APPROVE], "responded_by_user": {"id": "1", "name": "ana"}, "responded_at": "t"}
    )
    assert (approved["outcome"], approved["promoted"], approved["champion_after"]) == ("approved", True, "3")
    assert approved["reason"].startswith("approved by ana (gate: rejected: ")
    assert (
        approved["approval"]["responded_by"] == {"id": "1", "name": "ana"} and approved["approval"]["answer"] == APPROVE
    )
    declined = with_answer(decision, {"chosen_options": [KEEP], "responded_by_user": {"id": "2", "name": "bo"}})
    assert (declined["outcome"], declined["promoted"], declined["champion_after"]) == ("declined", False, "2")
    # the timeout answers with the default (KEEP) and nobody as the respondent
    timed_out = with_answer(decision, {"chosen_options": [KEEP], "responded_by_user": None})
    assert (timed_out["outcome"], timed_out["promoted"]) == ("approval_timeout", False)
    with pytest.raises(ValueError, match="waits for approval"):
        with_answer(decision, None)
    not_waiting = {**decision, "approval": {"required": False}}
    assert with_answer(not_waiting, None) is not_waiting


def test_the_approval_body_shows_metrics_cis_baselines_counts_and_links():
    ci = _test(0.01, -0.01, 0.03)
    decision = {
        **_waiting_decision(), "metric": "roc_auc", "holdout_start": "2016-01-01 00:00:00",
        "holdout_end": "2016-02-01 00:00:00", "holdout_counts": {"rows": 700, "positives": 70, "negatives": 630},
        "holdout_metrics": {r: {"roc_auc": v, "brier": 0.1} for r, v in
                            {"candidate": 0.91, "champion": 0.90, "persistence": 0.8, "base_rate": 0.5}.items()},
        "baseline_tests": {"persistence": SIGNIFICANT, "base_rate": SIGNIFICANT}, "test": ci,
        "guard_tests": {"brier": _test(-0.01, -0.03, 0.01)},
    }  # fmt: skip
    body = approval_body(decision, {"MLflow run of the candidate v3": "http://mlflow/#/x", "drift report": None})
    assert "**rain v3** vs champion v2" in body and "700 rows: 70 positive, 630 negative" in body
    assert "| roc_auc | 0.9100 | 0.9000 | 0.8000 | 0.5000 |" in body
    assert "- champion: +0.0100, 95% CI [-0.0100, +0.0300]" in body
    assert "- guard brier vs persistence: -0.0100" in body
    assert "[MLflow run of the candidate v3](http://mlflow/#/x)" in body and "drift report" not in body
