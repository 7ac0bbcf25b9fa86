-- Is any observation of another batch stored in this time range? (Cheap: the time column is
-- the primary key; a chunk of new data finds nothing and skips the conflict check.)
SELECT 1 FROM observations
WHERE {{ quote(time_column) }} >= :lo AND {{ quote(time_column) }} <= :hi AND batch_id <> :batch_id
LIMIT 1
