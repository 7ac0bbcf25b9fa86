"""Shared I/O: Airflow connections, the warehouse (SQL, bulk insert, time format), the MLflow registry.

May import mlops.config only; every stage package imports this one."""
