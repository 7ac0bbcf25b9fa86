-- How many of a batch's rows later batches replaced (ingest.on_conflict: replace).
SELECT count(*) AS replaced FROM observation_conflicts WHERE stored_batch_id = :batch_id AND action = 'replaced'
