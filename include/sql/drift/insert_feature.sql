INSERT INTO drift (
    drift_run_id, feature, feature_type, n_current, psi, test, test_statistic, p_value, distance,
    reference_missing_rate, current_missing_rate, missing_rate_change, drifted, reasons, created_at
) VALUES (
    :drift_run_id, :feature, :feature_type, :n_current, :psi, :test, :test_statistic, :p_value, :distance,
    :reference_missing_rate, :current_missing_rate, :missing_rate_change, :drifted, :reasons, :created_at
)
