-- One row of a batch that met a stored row with other values (see schema/010_ingest.sql).
INSERT INTO observation_conflicts (batch_id, {{ quote(time_column) }}, stored_batch_id, stored_values,
                                   new_values, action, recorded_at)
VALUES (:batch_id, :time, :stored_batch_id, :stored_values, :new_values, :action, :recorded_at)
ON CONFLICT (batch_id, {{ quote(time_column) }}) DO NOTHING
