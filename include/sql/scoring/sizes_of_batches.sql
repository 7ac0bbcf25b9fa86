-- Observations of each of the named batches (absent: none). `count` is the number of ids, bound
-- as b0 .. b(count-1). batch_score decides from it which of a group's batches are read together.
-- Each batch is a range of the time column's primary key (see observations_of_batches.sql).
WITH ids (batch_id) AS (VALUES {% for i in range(count) %}(:b{{ i }}){% if not loop.last %}, {% endif %}{% endfor %})
SELECT o.batch_id, COUNT(*) AS n
FROM ids i LEFT JOIN batches b ON b.batch_id = i.batch_id CROSS JOIN observations o
WHERE {{ in_batch_span("i.batch_id", "o.", span="b") }}
GROUP BY o.batch_id
