-- How many observations a batch has in the warehouse.
SELECT COUNT(*) AS n FROM observations WHERE batch_id = :batch_id
