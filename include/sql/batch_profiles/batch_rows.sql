-- The observations a batch holds now (after deduplication and any later replace).
SELECT
{%- for column in columns %}
    {{ column.quoted }}{% if not loop.last %},{% endif %}
{%- endfor %}
FROM observations
WHERE {{ in_batch_span(":batch_id") }}
