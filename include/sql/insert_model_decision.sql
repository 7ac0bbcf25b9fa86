-- One decision of promote or rollback_champion; a rerun of the same DAG run inserts nothing.
INSERT INTO model_decisions (
    decision_id, decided_at, model_name, action, outcome, candidate_version, champion_before,
    champion_after, forced, metric, candidate_score, champion_score, persistence_score,
    base_rate_score, difference, ci_low, ci_high, reason, triggered_by, dag_id, run_id, details
) VALUES (
    :decision_id, :decided_at, :model_name, :action, :outcome, :candidate_version, :champion_before,
    :champion_after, :forced, :metric, :candidate_score, :champion_score, :persistence_score,
    :base_rate_score, :difference, :ci_low, :ci_high, :reason, :triggered_by, :dag_id, :run_id, :details
)
ON CONFLICT (decision_id) DO NOTHING
