"""Monitoring stage: drift statistics, profiles, performance, reports, retrain decisions, demo faults.

May import mlops top-level modules and mlops.io."""
