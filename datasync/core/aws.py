"""boto3 clients built one way everywhere: region, optional emulator endpoint, timeouts, retries."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config


def client(
    service: str,
    *,
    region: str,
    endpoint_url: str | None = None,
    connect_timeout: float = 2,
    read_timeout: float = 25,
    attempts: int = 4,
    pool_size: int = 32,
) -> Any:
    """A client whose worst case per call is ``attempts`` x (connect + read timeout) + backoff.

    ``attempts`` counts every try, the first included (botocore's ``total_max_attempts``; its
    ``max_attempts`` counts retries only). ``attempts=1`` turns the SDK's own retries off, for
    callers that retry themselves within a time budget.
    """
    config = Config(
        region_name=region,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "total_max_attempts": attempts},
        max_pool_connections=pool_size,
    )
    # boto3 also honours AWS_ENDPOINT_URL by itself; passing it explicitly keeps the
    # settings object the single source of truth.
    return boto3.session.Session().client(service, endpoint_url=endpoint_url, config=config)
