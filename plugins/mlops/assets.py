"""Airflow assets shared by the DAGs: ingest updates OBSERVATIONS, batch_score PREDICTIONS.

The `x-` URI scheme marks a scheme of our own: Airflow then skips looking for a provider
to normalise it, which would import every provider's hooks (boto3 among them) at parse time.
"""

from airflow.sdk import Asset

OBSERVATIONS = Asset(name="observations", uri="x-warehouse://warehouse/observations")
PREDICTIONS = Asset(name="predictions", uri="x-warehouse://warehouse/predictions")
