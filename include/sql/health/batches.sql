-- Model health view: the latest batches of ingest (loaded, quarantined, duplicate), newest first.
SELECT batch_id, object_key, status, rows_in, rows_kept, rows_dropped, reason, report_uri, loaded_at
FROM batches
ORDER BY loaded_at DESC, batch_id
LIMIT :limit
