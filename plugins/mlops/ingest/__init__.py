"""Ingest stage: sensors, the CSV pipeline (shape, validation suite and reports, batches, quarantine).

May import mlops top-level modules, mlops.io and mlops.health.model (report links)."""
