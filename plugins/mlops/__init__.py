"""The pipeline's logic, in packages by stage. DAG files in dags/ only wire these together.

Top level: config, dag_defaults, alerts, assets, features, labels, hostname (used by every
stage). io/ (connections, warehouse, objectstore, registry) sits below the stages; the stages
are ingest/, training/, scoring/, monitoring/ and health/ (each __init__ says what it may
import). Airflow puts plugins/ on sys.path, so DAGs import this package as `mlops`.
Modules import heavy libraries (pandas, sklearn, mlflow, great_expectations) inside
functions, so that importing them while parsing a DAG file stays cheap.
"""
