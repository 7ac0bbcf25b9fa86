-- Observations per batch: batch_score splits a run's batches into groups by this row count.
SELECT batch_id, COUNT(*) AS n FROM observations GROUP BY batch_id
