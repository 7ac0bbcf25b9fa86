-- The observations asset event carrying this batch has been emitted (its task succeeded).
UPDATE batches SET announced_at = :announced_at WHERE batch_id = :batch_id AND status = 'loaded'
