-- Observations of one batch. The time column is the primary key: a row whose timestamp is
-- already stored (from an earlier, overlapping batch) is skipped, never duplicated or overwritten.
-- Positional placeholders (one per column, then batch_id and loaded_at), executed with executemany.
INSERT INTO observations (
{%- for column in columns %}{{ column.quoted }}, {% endfor %}batch_id, loaded_at)
VALUES ({% for column in columns %}?, {% endfor %}?, ?)
ON CONFLICT ({{ quote(time_column) }}) DO NOTHING
