-- The observations of several (small) batches in one query, by batch and then in time order:
-- a group's small batches are read together, not with one query each. `count` ids are bound
-- as b0 .. b(count-1); the first column is the batch id, then the `selected` columns. Each batch
-- is a range of the time column's primary key (its recorded span); CROSS JOIN keeps SQLite's
-- join order (the ids first), PostgreSQL plans it as an inner join.
WITH ids (batch_id) AS (VALUES {% for i in range(count) %}(:b{{ i }}){% if not loop.last %}, {% endif %}{% endfor %})
SELECT o.batch_id, {% for name in selected %}o.{{ quote(name) }}{% if not loop.last %}, {% endif %}{% endfor %}
FROM ids i LEFT JOIN batches b ON b.batch_id = i.batch_id CROSS JOIN observations o
WHERE {{ in_batch_span("i.batch_id", "o.", span="b") }}
ORDER BY o.batch_id, o.{{ quote(time_column) }}
