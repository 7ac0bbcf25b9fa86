-- Store a batch's profile; a retry or a re-profile replaces it (same key, newer content).
INSERT INTO batch_profiles (batch_id, first_day, last_day, n_rows, replaced_rows, profile, created_at)
VALUES (:batch_id, :first_day, :last_day, :n_rows, :replaced_rows, :profile, :created_at)
ON CONFLICT (batch_id) DO UPDATE SET
    first_day = excluded.first_day,
    last_day = excluded.last_day,
    n_rows = excluded.n_rows,
    replaced_rows = excluded.replaced_rows,
    profile = excluded.profile,
    created_at = excluded.created_at
