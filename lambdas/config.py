"""The Lambdas' configuration: the one place the functions read their environment.

Terraform sets these on each function (the destination module on a destination's function,
the intake module on the intake); AWS sets AWS_REGION. A dataclass rather than
pydantic-settings, which is not in the Lambda zip.
"""

from __future__ import annotations

import json
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


@dataclass(frozen=True)
class IntakeRoute:
    queue_url: str  # the destination queue
    buffer_queue_url: str  # the destination's own buffer queue (its function's source)


@dataclass(frozen=True)
class IntakeConfig:
    routes: dict[str, IntakeRoute]  # by destination
    analytics_hash_key: bytes | None
    log_level: str
    aws_region: str = "us-east-1"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> IntakeConfig:
        env = dict(os.environ if env is None else env)
        try:
            routes = {
                destination: IntakeRoute(route["queue_url"], route["buffer_queue_url"])
                for destination, route in json.loads(env["DATASYNC_INTAKE_ROUTES"]).items()
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise RuntimeError(
                "Lambda misconfigured: DATASYNC_INTAKE_ROUTES must be JSON "
                '{"<destination>": {"queue_url": ..., "buffer_queue_url": ...}} '
                f"(Terraform's intake module sets it; {type(exc).__name__})"
            ) from None
        key = env.get("DATASYNC_ANALYTICS_HASH_KEY")
        return cls(
            routes=routes,
            analytics_hash_key=key.encode() if key else None,
            log_level=env.get("DATASYNC_LOG_LEVEL", "INFO"),
            aws_region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        )
