SELECT * FROM batches WHERE batch_id = :batch_id
