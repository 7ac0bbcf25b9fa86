-- Observations in the window (window_start, window_end], every configured column (or the
-- columns named in selected, when given).
{%- set chosen = columns if not selected else columns | selectattr("name", "in", selected) | list %}
SELECT
{%- for column in chosen %}
    {{ column.quoted }}{% if not loop.last %},{% endif %}
{%- endfor %}
FROM observations
WHERE {{ quote(time_column) }} > :window_start AND {{ quote(time_column) }} <= :window_end
ORDER BY {{ quote(time_column) }}
