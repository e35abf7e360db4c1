"""boto3 clients built one way everywhere: region, optional emulator endpoint, timeouts."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config


def client(
    service: str,
    *,
    region: str,
    endpoint_url: str | None = None,
    read_timeout: float = 25,
    max_attempts: int = 3,
    pool_size: int = 32,
) -> Any:
    config = Config(
        region_name=region,
        connect_timeout=2,
        read_timeout=read_timeout,
        retries={"mode": "standard", "max_attempts": max_attempts},
        max_pool_connections=pool_size,
    )
    # boto3 also honours AWS_ENDPOINT_URL by itself; passing it explicitly keeps the
    # settings object the single source of truth.
    return boto3.session.Session().client(service, endpoint_url=endpoint_url, config=config)
