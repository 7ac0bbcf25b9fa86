"""The pipeline's logic, one module per concern. DAG files in dags/ only wire these together.

Airflow puts plugins/ on sys.path, so DAGs import this package as `mlops`.
Modules import heavy libraries (pandas, sklearn, mlflow, great_expectations) inside
functions, so that importing them while parsing a DAG file stays cheap.
"""
