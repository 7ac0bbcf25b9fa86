-- Predictions of batch_score. One row per observation time, batch, model version and role.
-- role: 'champion' (the served prediction) or 'challenger' (shadow scoring, never served).
CREATE TABLE IF NOT EXISTS predictions (
    batch_id         TEXT NOT NULL,
    {{ quote(time_column) }} TEXT NOT NULL,
    model_name       TEXT NOT NULL,
    model_version    TEXT NOT NULL,
    role             TEXT NOT NULL,
    probability      DOUBLE PRECISION NOT NULL,
    predicted_label  INTEGER NOT NULL,
    threshold        DOUBLE PRECISION NOT NULL,
    scored_at        TEXT NOT NULL,
    PRIMARY KEY (batch_id, {{ quote(time_column) }}, model_name, model_version, role)
);

-- Older warehouses had an index on observations (batch_id, time) for batch_score's reads; a
-- batch's rows are now a range of the time column's primary key (see 010_ingest.sql), and the
-- index only slowed every load. Dropped after 010_ingest.sql computed the spans with its help.
DROP INDEX IF EXISTS observations_batch_time;
