"""The object store (S3 API: SeaweedFS locally, MinIO or AWS S3 elsewhere): the one wrapper
of the pipeline's bucket (storage.bucket) that every stage uses.

Keys are relative to the bucket; URIs are s3://<bucket>/<key>. The client comes from the
object_store Airflow connection (connections.s3_client), shared within a
connections.shared_connections() block.
"""

from __future__ import annotations

import json

from mlops.config import get_config


def client():
    """The boto3 S3 client (one per shared_connections() block, else a new one)."""
    from mlops.io.connections import s3_client, shared

    return shared("s3", s3_client)


def uri(key: str) -> str:
    """s3://<bucket>/<key> of a key in the pipeline's bucket."""
    return f"s3://{get_config().storage.bucket}/{key}"


def key_of(object_uri: str) -> str:
    """The key of an s3:// URI in the pipeline's bucket; ValueError for any other URI."""
    prefix = uri("")
    if not object_uri.startswith(prefix):
        raise ValueError(f"{object_uri} is not in the pipeline's bucket {get_config().storage.bucket}")
    return object_uri[len(prefix) :]


def put_text(key: str, text: str, content_type: str) -> str:
    """Write `text` (UTF-8) at `key`; its URI."""
    client().put_object(Bucket=get_config().storage.bucket, Key=key, Body=text.encode(), ContentType=content_type)
    return uri(key)


def put_json(key: str, payload: dict) -> str:
    """Write `payload` as indented JSON (values JSON cannot hold as their str()); its URI."""
    return put_text(key, json.dumps(payload, indent=2, default=str), "application/json")


def get_text(object_uri: str) -> str:
    """The UTF-8 text of an object given by its s3:// URI in the pipeline's bucket."""
    response = client().get_object(Bucket=get_config().storage.bucket, Key=key_of(object_uri))
    return response["Body"].read().decode()


def delete(key: str) -> None:
    """Delete the object at `key` (no error if there is none)."""
    client().delete_object(Bucket=get_config().storage.bucket, Key=key)
