"""boto3 clients of the tool itself: the core's factory (datasync/core/aws.py) with the stack's
endpoint, region and keys, short timeouts, and no proxy unless asked for."""

from __future__ import annotations

from typing import Any

from datasync.core.aws import client as core_client


def client(service: str, env: dict[str, str], pool: int = 16, proxy: str | None = None) -> Any:
    """``proxy``: only for calls that must be counted as the pipeline's (the accounting pass);
    otherwise none, even where the accounting stack's HTTP_PROXY is set for the pipeline."""
    return core_client(
        service,
        region=env.get("AWS_REGION", "us-east-1"),
        endpoint_url=env.get("AWS_ENDPOINT_URL"),
        connect_timeout=3,
        read_timeout=30,
        attempts=3,
        pool_size=pool,
        credentials=(
            env.get("AWS_ACCESS_KEY_ID", "test"),
            env.get("AWS_SECRET_ACCESS_KEY", "test"),
        ),
        proxies={"http": proxy} if proxy else {},
    )
