"""Scoring stage: batch scoring with the champion into the predictions table.

May import mlops top-level modules and mlops.io."""
