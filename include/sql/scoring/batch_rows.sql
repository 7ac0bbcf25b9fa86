-- How many observations a batch has in the warehouse.
SELECT COUNT(*) AS n FROM observations WHERE {{ in_batch_span(":batch_id") }}
