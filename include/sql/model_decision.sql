-- A recorded decision by id (train and rollback_champion check it first: reruns are no-ops).
SELECT * FROM model_decisions WHERE decision_id = :decision_id
