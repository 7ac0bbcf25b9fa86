-- Predictions of one batch by one model version in one role, `rows` rows per statement.
-- What is the same for every row (batch, model, version, role, threshold, scored at) is bound
-- once per statement; each row binds only its time, probability and label. Bulk loading
-- this way costs about a third of a row-by-row executemany. VALUES columns are named
-- column1, column2, ... by both SQLite and PostgreSQL.
INSERT INTO predictions (
    batch_id, {{ quote(time_column) }}, model_name, model_version, role,
    probability, predicted_label, threshold, scored_at
)
SELECT
    :batch_id, v.column1, :model_name, :model_version, :role,
    CAST(v.column2 AS DOUBLE PRECISION), CAST(v.column3 AS INTEGER),
    CAST(:threshold AS DOUBLE PRECISION), :scored_at
FROM (VALUES
{%- for i in range(rows) %}
    (:t{{ i }}, :p{{ i }}, :l{{ i }}){{ "," if not loop.last }}
{%- endfor %}
) AS v
