-- Observations of each of the named batches (absent: none). `count` is the number of ids, bound
-- as b0 .. b(count-1). batch_score decides from it which of a group's batches are read together.
SELECT batch_id, COUNT(*) AS n
FROM observations
WHERE batch_id IN ({% for i in range(count) %}:b{{ i }}{% if not loop.last %}, {% endif %}{% endfor %})
GROUP BY batch_id
