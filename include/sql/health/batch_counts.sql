-- Model health view: how many batches ended in each status.
SELECT status, COUNT(*) AS n_batches, MAX(loaded_at) AS latest
FROM batches
GROUP BY status
