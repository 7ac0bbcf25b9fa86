-- The profiles of the batches holding days in [start_day, end_day] (YYYY-MM-DD).
SELECT batch_id, profile FROM batch_profiles
WHERE last_day >= :start_day AND first_day <= :end_day
ORDER BY batch_id
