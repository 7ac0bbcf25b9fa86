-- Decisions of train's promote task and of rollback_champion: one row per DAG run.
-- Both models' holdout metrics, the paired test, the reason and the trigger are kept here
-- (and on the model version in MLflow), so "why is version N champion?" has an answer.
CREATE TABLE IF NOT EXISTS model_decisions (
    decision_id              TEXT PRIMARY KEY,
    decided_at               TEXT NOT NULL,
    model_name               TEXT NOT NULL,
    action                   TEXT NOT NULL,
    outcome                  TEXT NOT NULL,
    candidate_version        TEXT,
    champion_before          TEXT,
    champion_after           TEXT,
    forced                   INTEGER NOT NULL,
    metric                   TEXT,
    candidate_score          DOUBLE PRECISION,
    champion_score           DOUBLE PRECISION,
    persistence_score        DOUBLE PRECISION,
    base_rate_score          DOUBLE PRECISION,
    difference               DOUBLE PRECISION,
    ci_low                   DOUBLE PRECISION,
    ci_high                  DOUBLE PRECISION,
    reason                   TEXT NOT NULL,
    triggered_by             TEXT NOT NULL,
    dag_id                   TEXT NOT NULL,
    run_id                   TEXT NOT NULL,
    details                  TEXT NOT NULL
);
