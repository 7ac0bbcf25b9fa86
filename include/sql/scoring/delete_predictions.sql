-- A batch's predictions by one model version in one role: replaced as a whole on rerun.
DELETE FROM predictions
WHERE batch_id = :batch_id AND model_name = :model_name
  AND model_version = :model_version AND role = :role
