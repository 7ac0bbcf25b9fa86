-- How many observations carry a batch's id (found within its recorded time span).
SELECT COUNT(*) FROM observations WHERE {{ in_batch_span(":batch_id") }}
