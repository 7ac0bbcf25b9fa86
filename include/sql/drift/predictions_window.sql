-- Predictions of one model version in one role in the window (window_start, window_end].
-- A time scored in several batches keeps its latest score.
SELECT {{ quote(time_column) }}, probability, predicted_label, scored_at
FROM predictions
WHERE model_name = :model_name
  AND model_version = :model_version
  AND role = :role
  AND {{ quote(time_column) }} > :window_start AND {{ quote(time_column) }} <= :window_end
ORDER BY {{ quote(time_column) }}, scored_at
