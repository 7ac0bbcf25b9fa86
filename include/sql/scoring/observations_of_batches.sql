-- The observations of several (small) batches in one query, by batch and then in time order:
-- a group's small batches are read together, not with one query each. `count` ids are bound
-- as b0 .. b(count-1); the first column is the batch id, then the `selected` columns.
SELECT batch_id, {% for name in selected %}{{ quote(name) }}{% if not loop.last %}, {% endif %}{% endfor %}
FROM observations
WHERE batch_id IN ({% for i in range(count) %}:b{{ i }}{% if not loop.last %}, {% endif %}{% endfor %})
ORDER BY batch_id, {{ quote(time_column) }}
