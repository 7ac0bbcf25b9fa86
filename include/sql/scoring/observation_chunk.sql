-- One chunk of a batch's observations, in time order, after the last time of the
-- previous chunk (keyset pagination on the time column's primary key, within the batch's
-- recorded span: each chunk is a short indexed query, so memory stays flat however large the
-- batch is). `selected` are the columns the model needs.
SELECT {% for name in selected %}{{ quote(name) }}{% if not loop.last %}, {% endif %}{% endfor %}
FROM observations
WHERE {{ in_batch_span(":batch_id") }} AND {{ quote(time_column) }} > :after
ORDER BY {{ quote(time_column) }}
LIMIT :limit
