"""The Lambda's configuration, from the environment Terraform gives each function."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class LambdaConfig:
    destination: str
    destination_queue_url: str
    dead_letter_queue_url: str
    max_receive_count: int
    analytics_hash_key: bytes | None
    log_level: str

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> LambdaConfig:
        env = dict(os.environ if env is None else env)
        missing = [
            name
            for name in (
                "DATASYNC_DESTINATION",
                "DATASYNC_DESTINATION_QUEUE_URL",
                "DATASYNC_DEAD_LETTER_QUEUE_URL",
            )
            if not env.get(name)
        ]
        if missing:
            raise RuntimeError(f"Lambda misconfigured, missing: {', '.join(missing)}")
        key = env.get("DATASYNC_ANALYTICS_HASH_KEY")
        return cls(
            destination=env["DATASYNC_DESTINATION"],
            destination_queue_url=env["DATASYNC_DESTINATION_QUEUE_URL"],
            dead_letter_queue_url=env["DATASYNC_DEAD_LETTER_QUEUE_URL"],
            max_receive_count=int(env.get("DATASYNC_MAX_RECEIVE_COUNT", "5")),
            analytics_hash_key=key.encode() if key else None,
            log_level=env.get("DATASYNC_LOG_LEVEL", "INFO"),
        )
