-- The newest observation time: the training window ends there.
SELECT MAX({{ quote(time_column) }}) AS latest, COUNT(*) AS n_rows
FROM observations
