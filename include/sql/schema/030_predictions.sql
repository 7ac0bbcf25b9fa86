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

-- batch_score reads a batch's observations in time order, chunk by chunk (keyset on the
-- time column): this index makes each chunk a direct range read.
CREATE INDEX IF NOT EXISTS observations_batch_time ON observations (batch_id, {{ quote(time_column) }});
