-- Model health view: when data last arrived, was loaded, was scored and was checked for drift
-- (wall-clock UTC text), and the newest observation time the data itself reaches.
SELECT
    (SELECT MAX(loaded_at) FROM batches) AS last_batch_received,
    (SELECT MAX(loaded_at) FROM batches WHERE status = 'loaded') AS last_batch_loaded,
    (SELECT MAX(scored_at) FROM predictions) AS last_predictions_written,
    (SELECT MAX(created_at) FROM drift_runs) AS last_drift_check,
    (SELECT MAX(decided_at) FROM model_decisions) AS last_decision,
    (SELECT MAX({{ quote(time_column) }}) FROM observations) AS latest_observation
