-- This load added rows: they are to be announced (again, for a replay that added rows).
UPDATE batches SET announced_at = NULL WHERE batch_id = :batch_id
