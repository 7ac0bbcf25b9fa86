-- drift_check results. Portable: runs on SQLite and PostgreSQL. Timestamps: UTC text.
-- drift_runs: one row per drift_check run (the window, the champion it compared against,
-- the data-set rule's verdict, the report and what was done about it).
CREATE TABLE IF NOT EXISTS drift_runs (
    drift_run_id         TEXT PRIMARY KEY,
    airflow_run_id       TEXT NOT NULL,
    model_name           TEXT NOT NULL,
    model_version        TEXT NOT NULL,
    window_start         TEXT NOT NULL,
    window_end           TEXT NOT NULL,
    n_reference          INTEGER NOT NULL,
    n_current            INTEGER NOT NULL,
    n_drifted            INTEGER NOT NULL,
    drifted_share        DOUBLE PRECISION NOT NULL,
    drifted_features     TEXT NOT NULL,
    score_psi            DOUBLE PRECISION,
    score_p_value        DOUBLE PRECISION,
    n_labeled            INTEGER,
    realized_accuracy    DOUBLE PRECISION,
    realized_f1          DOUBLE PRECISION,
    realized_brier       DOUBLE PRECISION,
    holdout_accuracy     DOUBLE PRECISION,
    holdout_f1           DOUBLE PRECISION,
    holdout_brier        DOUBLE PRECISION,
    challenger_n_labeled INTEGER,
    challenger_accuracy  DOUBLE PRECISION,
    challenger_f1        DOUBLE PRECISION,
    challenger_brier     DOUBLE PRECISION,
    rule_fired           INTEGER NOT NULL,
    reason               TEXT NOT NULL,
    report_uri           TEXT,
    -- 'triggered', 'skipped' or 'not needed', with why, once the trigger step has decided.
    retrain_decision     TEXT,
    retrain_detail       TEXT,
    train_run_id         TEXT,
    created_at           TEXT NOT NULL
);

-- drift: one row per feature per drift_check run.
CREATE TABLE IF NOT EXISTS drift (
    drift_run_id            TEXT NOT NULL,
    feature                 TEXT NOT NULL,
    feature_type            TEXT NOT NULL,
    n_current               INTEGER NOT NULL,
    psi                     DOUBLE PRECISION,
    test                    TEXT NOT NULL,
    test_statistic          DOUBLE PRECISION,
    p_value                 DOUBLE PRECISION,
    distance                DOUBLE PRECISION,
    reference_missing_rate  DOUBLE PRECISION NOT NULL,
    current_missing_rate    DOUBLE PRECISION NOT NULL,
    missing_rate_change     DOUBLE PRECISION NOT NULL,
    drifted                 INTEGER NOT NULL,
    reasons                 TEXT NOT NULL,
    created_at              TEXT NOT NULL,
    PRIMARY KEY (drift_run_id, feature)
);
