"""The Lambda's configuration: the one place the function reads its environment.

Terraform sets these on each function; AWS sets AWS_REGION. A dataclass rather than
pydantic-settings, which is not in the Lambda zip.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

REQUIRED = (
    "DATASYNC_DESTINATION",
    "DATASYNC_DESTINATION_QUEUE_URL",
    "DATASYNC_DEAD_LETTER_QUEUE_URL",
)


@dataclass(frozen=True)
class LambdaConfig:
    destination: str
    destination_queue_url: str
    dead_letter_queue_url: str
    max_receive_count: int
    analytics_hash_key: bytes | None
    log_level: str
    aws_region: str = "us-east-1"
    # Optional: where failed records are backed off; derived from the records when unset.
    buffer_queue_url: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> LambdaConfig:
        env = dict(os.environ if env is None else env)
        missing = [name for name in REQUIRED if not env.get(name)]
        if missing:
            raise RuntimeError(
                f"Lambda misconfigured, missing: {', '.join(missing)} "
                "(Terraform's destination module sets them on the function)"
            )
        key = env.get("DATASYNC_ANALYTICS_HASH_KEY")
        return cls(
            destination=env["DATASYNC_DESTINATION"],
            destination_queue_url=env["DATASYNC_DESTINATION_QUEUE_URL"],
            dead_letter_queue_url=env["DATASYNC_DEAD_LETTER_QUEUE_URL"],
            max_receive_count=int(env.get("DATASYNC_MAX_RECEIVE_COUNT", "5")),
            analytics_hash_key=key.encode() if key else None,
            log_level=env.get("DATASYNC_LOG_LEVEL", "INFO"),
            aws_region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            buffer_queue_url=env.get("DATASYNC_BUFFER_QUEUE_URL") or None,
        )
