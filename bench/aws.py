"""boto3 clients of the tool itself: never through a proxy, short timeouts, few retries."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config


def client(service: str, env: dict[str, str], pool: int = 16) -> Any:
    session = boto3.session.Session(
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY", "test"),
        region_name=env.get("AWS_REGION", "us-east-1"),
    )
    config = Config(
        connect_timeout=3,
        read_timeout=30,
        retries={"mode": "standard", "max_attempts": 3},
        max_pool_connections=pool,
        proxies={},  # the accounting stack's HTTP_PROXY is for the pipeline, not for us
    )
    return session.client(service, endpoint_url=env.get("AWS_ENDPOINT_URL"), config=config)
