-- Observations in the window (window_start, window_end], every configured column.
SELECT
{%- for column in columns %}
    {{ column.quoted }}{% if not loop.last %},{% endif %}
{%- endfor %}
FROM observations
WHERE {{ quote(time_column) }} > :window_start AND {{ quote(time_column) }} <= :window_end
ORDER BY {{ quote(time_column) }}
