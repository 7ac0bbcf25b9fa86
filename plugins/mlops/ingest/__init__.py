"""Ingest stage: landing sensor, one object end to end (pipeline), chunk validator, suite, CSV shape.

May import mlops top-level modules, mlops.io and mlops.health.model (report links)."""
