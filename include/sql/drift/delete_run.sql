-- Re-running a drift_check run replaces its rows.
DELETE FROM drift WHERE drift_run_id = :drift_run_id;
DELETE FROM drift_runs WHERE drift_run_id = :drift_run_id;
