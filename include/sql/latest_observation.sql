-- The newest observation time: the training window and drift_check's window end there (data
-- may be replayed history, so windows are anchored on the data, not on the clock).
SELECT MAX({{ quote(time_column) }}) AS latest, COUNT(*) AS n_rows
FROM observations
