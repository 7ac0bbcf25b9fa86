-- Batches with at least one observation in the time range [start, end) (UTC text).
SELECT DISTINCT batch_id
FROM observations
WHERE {{ quote(time_column) }} >= :start AND {{ quote(time_column) }} < :end
ORDER BY batch_id
