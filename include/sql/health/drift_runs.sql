-- Model health view: the latest drift_check runs, newest first (window, drifted features,
-- realized against holdout metrics of champion and challenger, rule, report, retraining).
SELECT drift_run_id, airflow_run_id, model_version, window_start, window_end, n_current,
       n_drifted, drifted_share, drifted_features, score_psi, n_labeled,
       realized_accuracy, realized_f1, realized_brier, holdout_accuracy, holdout_f1, holdout_brier,
       challenger_n_labeled, challenger_accuracy, challenger_f1, challenger_brier,
       rule_fired, reason, report_uri, retrain_decision, retrain_detail, train_run_id, created_at
FROM drift_runs
ORDER BY window_end DESC, created_at DESC
LIMIT :limit
