-- One chunk of a batch's observations, in time order: keyset pagination on the time column's
-- primary key within the batch's time span (scoring/batch_span.sql). The first chunk starts at
-- the span's first time (`first`: >=), each next one after the last time of the previous (>).
-- One lower bound only: SQLite's planner takes a single one for the index range, and a second
-- would make every chunk scan from the batch's start. Each chunk is a short indexed query, so
-- memory stays flat however large the batch is. `selected` are the columns the model needs.
SELECT {% for name in selected %}{{ quote(name) }}{% if not loop.last %}, {% endif %}{% endfor %}
FROM observations
WHERE batch_id = :batch_id
  AND {{ quote(time_column) }} {{ ">=" if first else ">" }} :after
  AND {{ quote(time_column) }} <= :last
ORDER BY {{ quote(time_column) }}
LIMIT :limit
