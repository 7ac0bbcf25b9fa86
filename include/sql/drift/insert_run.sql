INSERT INTO drift_runs (
    drift_run_id, airflow_run_id, model_name, model_version, window_start, window_end,
    n_reference, n_current, n_drifted, drifted_share, drifted_features, score_psi, score_p_value,
    n_labeled, realized_accuracy, realized_f1, realized_brier,
    holdout_accuracy, holdout_f1, holdout_brier,
    challenger_n_labeled, challenger_accuracy, challenger_f1, challenger_brier,
    rule_fired, reason, report_uri, created_at
) VALUES (
    :drift_run_id, :airflow_run_id, :model_name, :model_version, :window_start, :window_end,
    :n_reference, :n_current, :n_drifted, :drifted_share, :drifted_features, :score_psi, :score_p_value,
    :n_labeled, :realized_accuracy, :realized_f1, :realized_brier,
    :holdout_accuracy, :holdout_f1, :holdout_brier,
    :challenger_n_labeled, :challenger_accuracy, :challenger_f1, :challenger_brier,
    :rule_fired, :reason, :report_uri, :created_at
)
