-- The stored observations of other batches at these timestamps (an expanding list).
SELECT {% for column in columns %}{{ column.quoted }}, {% endfor %}batch_id
FROM observations
WHERE {{ quote(time_column) }} IN :times AND batch_id <> :batch_id
