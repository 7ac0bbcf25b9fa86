-- A batch's recorded time span (see mlops.io.warehouse.in_batch_span); none recorded (rows
-- written by hand): every time. No row when the batch is not in the batches table.
SELECT COALESCE(first_time, '') AS first_time, COALESCE(last_time, '~') AS last_time
FROM batches WHERE batch_id = :batch_id
