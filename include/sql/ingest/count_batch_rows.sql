-- Observations this batch added (rows already stored by an earlier batch keep that batch's id).
SELECT COUNT(*) FROM observations WHERE batch_id = :batch_id
