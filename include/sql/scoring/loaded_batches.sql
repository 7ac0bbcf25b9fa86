-- Every batch with observations in the warehouse, and whether it already has predictions
-- of the given model versions (champion and, when there is one, challenger).
-- batch_score scores a batch for each role whose flag is 0.
SELECT
    b.batch_id,
    CASE WHEN EXISTS (
        SELECT 1 FROM predictions p
        WHERE p.batch_id = b.batch_id AND p.model_name = :model_name
          AND p.model_version = :champion_version AND p.role = 'champion'
    ) THEN 1 ELSE 0 END AS has_champion,
    CASE WHEN EXISTS (
        SELECT 1 FROM predictions p
        WHERE p.batch_id = b.batch_id AND p.model_name = :model_name
          AND p.model_version = :challenger_version AND p.role = 'challenger'
    ) THEN 1 ELSE 0 END AS has_challenger
FROM (SELECT DISTINCT batch_id FROM observations) b
ORDER BY b.batch_id
