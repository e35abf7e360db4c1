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
    credentials: tuple[str, str] | None = None,
    proxies: dict[str, str] | None = None,
) -> Any:
    """A client whose worst case per call is ``attempts`` x (connect + read timeout) + backoff.

    ``attempts`` counts every try, the first included (botocore's ``total_max_attempts``; its
    ``max_attempts`` counts retries only). ``attempts=1`` turns the SDK's own retries off, for
    callers that retry themselves within a time budget.
    ``credentials`` (access key id, secret) replace the SDK's own lookup, for an emulator's
    fixed keys; ``proxies`` is botocore's option (None: the environment's HTTP(S)_PROXY).
    """
    config = Config(
        region_name=region,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "total_max_attempts": attempts},
        max_pool_connections=pool_size,
        proxies=proxies,
    )
    access_key, secret_key = credentials or (None, None)
    session = boto3.session.Session(aws_access_key_id=access_key, aws_secret_access_key=secret_key)
    # boto3 also honours AWS_ENDPOINT_URL by itself; passing it explicitly keeps the
    # settings object the single source of truth.
    return session.client(service, endpoint_url=endpoint_url, config=config)
