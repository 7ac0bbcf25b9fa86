-- Runs once, when the PostgreSQL volume is first initialized (official postgres image:
-- /docker-entrypoint-initdb.d/). POSTGRES_DB (the Airflow metadata DB) exists already;
-- the warehouse and MLflow's backend store get their own databases on the same server.
CREATE DATABASE warehouse;
CREATE DATABASE mlflow;
