-- Whether a batch has predictions of one model version in one role, all scored at or after
-- the run's start (a retry of a batch_score group skips the batches its earlier attempt finished).
SELECT COUNT(*) AS n, MIN(scored_at) AS first_scored
FROM predictions
WHERE batch_id = :batch_id AND model_name = :model_name
  AND model_version = :model_version AND role = :role
