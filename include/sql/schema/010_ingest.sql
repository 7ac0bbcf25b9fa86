-- Warehouse tables. Rendered with Jinja from the data set configuration (the observation
-- columns come from dataset.columns). Portable: runs on SQLite and PostgreSQL.
-- Timestamps are stored as ISO-8601 text in UTC ('YYYY-MM-DD HH:MM:SS'), which sorts and
-- compares correctly in both databases.

CREATE TABLE IF NOT EXISTS batches (
    batch_id      TEXT PRIMARY KEY,
    object_key    TEXT NOT NULL,
    checksum      TEXT NOT NULL,
    raw_uri       TEXT,
    rows_in       INTEGER,
    rows_kept     INTEGER,
    rows_dropped  INTEGER,
    status        TEXT NOT NULL,
    reason        TEXT,
    report_uri    TEXT,
    loaded_at     TEXT NOT NULL
);

-- When the observations asset event that carries this loaded batch was emitted (UTC text);
-- NULL: loaded but not announced yet (the attempt died first, or announce_observations has
-- not run): the next announce_observations announces it. Batches loaded before the column
-- existed were announced by the run that loaded them (backfill, runs once with the ALTER).
ALTER TABLE batches ADD COLUMN announced_at TEXT;
UPDATE batches SET announced_at = loaded_at WHERE status = 'loaded';

CREATE TABLE IF NOT EXISTS observations (
{%- for column in columns %}
    {{ column.quoted }} {{ column.sql_type }}{% if column.name == time_column %} PRIMARY KEY{% endif %},
{%- endfor %}
    batch_id      TEXT NOT NULL,
    loaded_at     TEXT NOT NULL
);

-- The time span of the rows a batch's loads wrote (time text, NULL: none). observations has no
-- index on batch_id (one more index entry per row cost the bulk load ~40% of the server's
-- work): a batch's rows are found as a range of the time column's primary key, filtered by
-- batch_id (warehouse.in_batch_span). The span only widens, so it bounds every row that carries
-- the batch's id, replaced rows included. Older warehouses: computed once from their rows.
ALTER TABLE batches ADD COLUMN first_time TEXT;
ALTER TABLE batches ADD COLUMN last_time TEXT;
UPDATE batches SET
    first_time = (SELECT MIN(o.{{ quote(time_column) }}) FROM observations o WHERE o.batch_id = batches.batch_id),
    last_time = (SELECT MAX(o.{{ quote(time_column) }}) FROM observations o WHERE o.batch_id = batches.batch_id);

-- One loaded batch per content: the same file under several keys, processed at once, races
-- to insert its 'loaded' row; the database lets exactly one win (the others record 'duplicate').
CREATE UNIQUE INDEX IF NOT EXISTS batches_one_loaded_per_checksum ON batches (checksum) WHERE status = 'loaded';

-- Rows of a batch whose timestamp was already stored, by another batch, with other values.
-- action: 'kept_first' (ingest.on_conflict: keep_first, the stored row stays) or 'replaced'
-- (replace: the observation now holds this batch's values and batch_id). The values are JSON
-- objects of the data set's columns; a rescore reads stored_batch_id to know what changed.
CREATE TABLE IF NOT EXISTS observation_conflicts (
    batch_id        TEXT NOT NULL,
    {{ quote(time_column) }} TEXT NOT NULL,
    stored_batch_id TEXT NOT NULL,
    stored_values   TEXT NOT NULL,
    new_values      TEXT NOT NULL,
    action          TEXT NOT NULL,
    recorded_at     TEXT NOT NULL,
    PRIMARY KEY (batch_id, {{ quote(time_column) }})
);
