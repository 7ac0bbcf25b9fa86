"""Shared I/O below every stage: connections, warehouse (SQL, time format), objectstore (S3), registry (aliases).

May import mlops.config and each other only; every stage package imports this one."""
