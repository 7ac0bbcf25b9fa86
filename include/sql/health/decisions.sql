-- Model health view: the latest promotion / rollback decisions, newest first.
SELECT decided_at, action, outcome, candidate_version, champion_before, champion_after, forced,
       metric, candidate_score, champion_score, persistence_score, base_rate_score,
       difference, ci_low, ci_high, reason, triggered_by, dag_id, run_id
FROM model_decisions
ORDER BY decided_at DESC
LIMIT :limit
