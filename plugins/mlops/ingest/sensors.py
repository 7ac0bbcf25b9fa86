"""A deferrable sensor for objects under a prefix, built on the Amazon provider.

It does what the provider's ``S3KeySensor(wildcard_match=True, deferrable=True)`` does, with the
provider's own parts: ``S3Hook.check_for_wildcard_key`` for the first poke and ``S3KeyTrigger``
(aiobotocore, in the triggerer) while waiting. The only difference: the provider is imported
when the task runs, not when the DAG file is parsed. Importing ``...sensors.s3`` pulls in boto3
and costs ~0.5 s, the whole parse budget of a DAG file.
"""

from __future__ import annotations

import time
from datetime import timedelta

from airflow.sdk import BaseSensorOperator


class LandingObjectSensor(BaseSensorOperator):
    """Succeeds as soon as any object matches ``bucket_key`` (a wildcard such as ``landing/*``).

    ``deferrable=True``: pokes every ``poke_interval`` for ``poke_before_defer`` seconds in its
    own process, then hands the wait to the triggerer (no worker slot). A file that lands
    meanwhile (files come in bursts) costs no deferral: the resumed attempt is one more task
    start, and Airflow 3.3 fails a deferred task whose trigger fires within seconds of deferring
    when it reads the deferring process's stale "success" late (apache/airflow#72716).
    ``deferrable=False``: plain sensor (use ``mode="reschedule"`` to free the slot between pokes).
    """

    template_fields = ("bucket_key",)

    def __init__(
        self,
        *,
        bucket_name: str,
        bucket_key: str,
        aws_conn_id: str,
        deferrable: bool = True,
        poke_before_defer: float = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.bucket_name = bucket_name
        self.bucket_key = bucket_key
        self.aws_conn_id = aws_conn_id
        self.deferrable = deferrable
        self.poke_before_defer = poke_before_defer

    def poke(self, context) -> bool:
        """Whether a file to ingest is waiting (mlops.ingest.pipeline.landing_keys: the listing's own rule)."""
        from mlops.ingest import pipeline as ingest

        self.log.info("Looking for files to ingest under s3://%s/%s", self.bucket_name, self.bucket_key)
        return bool(ingest.landing_keys(limit=1, report_ignored=False))

    def execute(self, context):
        if not self.deferrable:
            return super().execute(context)
        if self.poke_until(context, time.monotonic() + self.poke_before_defer):
            return None
        from airflow.providers.amazon.aws.triggers.s3 import S3KeyTrigger

        self.defer(
            timeout=timedelta(seconds=self.timeout),
            trigger=S3KeyTrigger(
                bucket_name=self.bucket_name,
                bucket_key=self.bucket_key,
                wildcard_match=True,
                aws_conn_id=self.aws_conn_id,
                poke_interval=self.poke_interval,
            ),
            method_name="execute_complete",
        )
        return None

    def poke_until(self, context, deadline: float) -> bool:
        """Poke every poke_interval until a file is found (True) or `deadline` (time.monotonic()) passes (False)."""
        while not self.poke(context):
            if time.monotonic() + self.poke_interval > deadline:
                return False
            time.sleep(self.poke_interval)
        return True

    def execute_complete(self, context, event: dict | None = None) -> None:
        if event and event.get("status") == "error":
            raise RuntimeError(f"S3KeyTrigger failed: {event.get('message')}")
        if not self.poke(context):  # only zero-length placeholders matched the wildcard: wait on
            self.log.info("Objects matched %s but none is a file to ingest yet; waiting", self.bucket_key)
            self.execute(context)
            return
        self.log.info("Object(s) found under s3://%s/%s", self.bucket_name, self.bucket_key)
