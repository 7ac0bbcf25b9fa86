"""The retraining decision of drift_check: deduplicated by in-flight runs and a cooldown."""

import datetime as dt

from mlops.monitoring import retrain

NOW = dt.datetime(2030, 6, 1, 12, 0, tzinfo=dt.UTC)


def test_no_trigger_when_the_rule_did_not_fire():
    assert retrain.decide(False, 0, None, NOW, 24)[0] == "not needed"


def test_trigger_when_fired_and_nothing_ran_before():
    assert retrain.decide(True, 0, None, NOW, 24)[0] == "trigger"


def test_skip_while_a_train_run_is_queued_or_running():
    decision, why = retrain.decide(True, 1, None, NOW, 24)
    assert decision == "skip" and "queued or running" in why


def test_cooldown_counts_from_the_last_run():
    decision, why = retrain.decide(True, 0, NOW - dt.timedelta(hours=23, minutes=59), NOW, 24)
    assert decision == "skip" and "cooldown" in why and "24 h" in why
    assert retrain.decide(True, 0, NOW - dt.timedelta(hours=24), NOW, 24)[0] == "trigger"
    assert retrain.decide(True, 0, NOW - dt.timedelta(minutes=1), NOW, 0)[0] == "trigger"


def test_train_conf_and_run_id_come_from_the_drift_run():
    summary = {
        "drift_run_id": "manual__2030",
        "reason": "3 of 7 features drifted",
        "drifted_features": ["a"],
        "report_uri": "s3://b/r.html",
    }
    conf = retrain.train_conf(summary)
    assert conf == {
        "reason": "drift_check manual__2030: 3 of 7 features drifted",
        "drifted_features": ["a"],
        "report_uri": "s3://b/r.html",
    }
    assert retrain.train_run_id("manual__2030") == "drift__manual__2030"
