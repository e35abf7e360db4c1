"""boto3 clients of the tool itself: short timeouts, few retries, no proxy unless asked for."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config


def client(service: str, env: dict[str, str], pool: int = 16, proxy: str | None = None) -> Any:
    """``proxy``: only for calls that must be counted as the pipeline's (the accounting pass)."""
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
        # The accounting stack's HTTP_PROXY is for the pipeline, not for us (unless asked).
        proxies={"http": proxy} if proxy else {},
    )
    return session.client(service, endpoint_url=env.get("AWS_ENDPOINT_URL"), config=config)
