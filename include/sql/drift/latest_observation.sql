-- The time of the latest observation: drift_check's window ends there (data may be replayed
-- history, so the window is anchored on the data, not on the clock).
SELECT MAX({{ quote(time_column) }}) AS latest FROM observations
