-- One row per batch id; a rerun or replay of the same batch updates it in place.
INSERT INTO batches (batch_id, object_key, checksum, raw_uri, rows_in, rows_kept, rows_dropped,
                     status, reason, report_uri, loaded_at)
VALUES (:batch_id, :object_key, :checksum, :raw_uri, :rows_in, :rows_kept, :rows_dropped,
        :status, :reason, :report_uri, :loaded_at)
ON CONFLICT (batch_id) DO UPDATE SET
    object_key = excluded.object_key,
    checksum = excluded.checksum,
    raw_uri = excluded.raw_uri,
    rows_in = excluded.rows_in,
    rows_kept = excluded.rows_kept,
    rows_dropped = excluded.rows_dropped,
    status = excluded.status,
    reason = excluded.reason,
    report_uri = excluded.report_uri,
    loaded_at = excluded.loaded_at
