"""Health: service checks and the model health view (data, page, Airflow plugin app).

May import mlops top-level modules, mlops.io, mlops.monitoring and mlops.training.metrics."""
