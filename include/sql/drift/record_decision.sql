UPDATE drift_runs
SET retrain_decision = :retrain_decision, retrain_detail = :retrain_detail, train_run_id = :train_run_id
WHERE drift_run_id = :drift_run_id
