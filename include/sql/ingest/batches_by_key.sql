SELECT * FROM batches WHERE object_key = :object_key ORDER BY loaded_at DESC
