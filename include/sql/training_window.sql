-- The training window of train: every observation between the window_start and window_end
-- parameters (inclusive; timestamps are UTC text, which compares correctly), in time
-- order. The label is derived in Python (mlops.labels) from these rows; the shipped
-- Future_weather_condition column is selected with the rest but never used.
SELECT
{%- for column in columns %}
    {{ column.quoted }},
{%- endfor %}
    batch_id
FROM observations
WHERE {{ quote(time_column) }} >= :window_start
  AND {{ quote(time_column) }} <= :window_end
ORDER BY {{ quote(time_column) }}
