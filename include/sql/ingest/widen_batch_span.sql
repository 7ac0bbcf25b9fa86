-- Widen a batch's time span to cover the rows its load wrote (in the load's transaction): the
-- span only grows, so it bounds every observation that carries the batch's id.
UPDATE batches SET
    first_time = CASE WHEN first_time IS NULL OR first_time > :first_time THEN :first_time ELSE first_time END,
    last_time = CASE WHEN last_time IS NULL OR last_time < :last_time THEN :last_time ELSE last_time END
WHERE batch_id = :batch_id
