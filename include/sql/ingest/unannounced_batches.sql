-- Loaded batches whose observations no asset event has announced yet, with the rows each one
-- holds in observations (a batch whose rows were all stored already holds none).
SELECT b.batch_id,
       (SELECT COUNT(*) FROM observations o WHERE {{ in_batch_span("b.batch_id", "o.", span="b") }}) AS stored_rows
FROM batches b
WHERE b.status = 'loaded' AND b.announced_at IS NULL
ORDER BY b.loaded_at, b.batch_id
