-- Batches whose profile is missing (loaded before profiling existed, or the profiling attempt
-- died) or stale (later batches replaced more of their rows than when it was made).
SELECT batch_id FROM batches
WHERE status = 'loaded' AND batch_id NOT IN (SELECT batch_id FROM batch_profiles)
UNION
SELECT p.batch_id FROM batch_profiles p
WHERE p.replaced_rows < (
    SELECT count(*) FROM observation_conflicts c WHERE c.stored_batch_id = p.batch_id AND c.action = 'replaced'
)
ORDER BY batch_id
