-- Batch profiles (mlops.monitoring.batch_profile): per loaded batch, its rows' counts per day on fixed
-- grids, so drift_check merges counts instead of re-reading the window's rows. Written by
-- ingest's profile_batches task (drift_check reads rows while a batch has none), keyed by
-- batch_id: a retry or a re-profile replaces the row. first_day/last_day (YYYY-MM-DD) bound the
-- days the profile holds; replaced_rows: how many of the batch's rows later batches had replaced
-- when it was made (observation_conflicts): fewer than now means the profile is stale.
CREATE TABLE IF NOT EXISTS batch_profiles (
    batch_id   TEXT PRIMARY KEY,
    first_day  TEXT NOT NULL,
    last_day   TEXT NOT NULL,
    n_rows     INTEGER NOT NULL,
    replaced_rows INTEGER NOT NULL,
    profile    TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS batch_profiles_days ON batch_profiles (last_day, first_day);
