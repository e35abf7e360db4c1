"""The Lambdas' configuration: the one place the functions read their environment.

Terraform sets these on each function (the destination module on a destination's function,
the intake module on the intake); AWS sets AWS_REGION. Dataclasses rather than
pydantic-settings, which is not in the Lambda zip; each variable is declared once in VARIABLES,
with its default and meaning (docs/configuration.md is generated from them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from datasync.contract import DESTINATIONS
from datasync.variables import Variable

DESTINATION_FUNCTIONS, INTAKE_FUNCTION = "destination Lambdas", "intake Lambda"
BOTH = (INTAKE_FUNCTION, DESTINATION_FUNCTIONS)
DESTINATION_MODULE = "Terraform's destination module sets it"

VARIABLES = {
    v.name: v
    for v in (
        Variable(
            "DATASYNC_DESTINATION",
            f"The destination a function shapes events for (required; {DESTINATION_MODULE})",
            allowed=", ".join(DESTINATIONS),
            read_by=(DESTINATION_FUNCTIONS,),
        ),
        Variable(
            "DATASYNC_DESTINATION_QUEUE_URL",
            f"Where it sends what it shaped (required; {DESTINATION_MODULE})",
            allowed="URL",
            read_by=(DESTINATION_FUNCTIONS,),
        ),
        Variable(
            "DATASYNC_DEAD_LETTER_QUEUE_URL",
            f"Where a record that can never be applied goes, with its reason (required; "
            f"{DESTINATION_MODULE})",
            allowed="URL",
            read_by=(DESTINATION_FUNCTIONS,),
        ),
        Variable(
            "DATASYNC_BUFFER_QUEUE_URL",
            "Where failed records are backed off (unset: derived from the records' queue)",
            allowed="URL",
            read_by=(DESTINATION_FUNCTIONS,),
        ),
        Variable(
            "DATASYNC_MAX_RECEIVE_COUNT",
            "Receives of a failing record before it is dead-lettered (the buffer queue's "
            "`maxReceiveCount`)",
            default="5",
            allowed="integer ≥ 1",
            read_by=(DESTINATION_FUNCTIONS,),
        ),
        Variable(
            "DATASYNC_INTAKE_ROUTES",
            "Per destination, its queue and buffer queue (required; Terraform's intake module "
            "sets it)",
            allowed='JSON `{"<destination>": {"queue_url": …, "buffer_queue_url": …}}`',
            read_by=(INTAKE_FUNCTION,),
        ),
        Variable(
            "DATASYNC_ANALYTICS_HASH_KEY",
            "HMAC key of the analytics pseudonyms (Terraform variable `analytics_hash_key`)",
            allowed="text (secret)",
            read_by=BOTH,
        ),
        Variable(
            "DATASYNC_LOG_LEVEL",
            "Log level of the JSON logs: one line per batch with every event id and "
            "correlation id, and one per failure",
            default="INFO",
            allowed="DEBUG, INFO, WARNING, ERROR",
            read_by=BOTH,
        ),
        Variable(
            "AWS_REGION",
            "AWS region (AWS sets it)",
            default="us-east-1",
            read_by=BOTH,
            also=("AWS_DEFAULT_REGION",),
        ),
    )
}
REQUIRED = (
    "DATASYNC_DESTINATION",
    "DATASYNC_DESTINATION_QUEUE_URL",
    "DATASYNC_DEAD_LETTER_QUEUE_URL",
)


def _environment(env: Mapping[str, str] | None) -> dict[str, str | None]:
    """Every variable's value in ``env`` (default: this process's environment), or its default."""
    values = os.environ if env is None else env
    return {name: variable.read(values) for name, variable in VARIABLES.items()}


def _key(value: str | None) -> bytes | None:
    return value.encode() if value else None


@dataclass(frozen=True)
class LambdaConfig:
    destination: str
    destination_queue_url: str
    dead_letter_queue_url: str
    max_receive_count: int
    analytics_hash_key: bytes | None
    log_level: str
    aws_region: str
    # Optional: where failed records are backed off; derived from the records when unset.
    buffer_queue_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LambdaConfig:
        values = _environment(env)
        missing = [name for name in REQUIRED if not values[name]]
        if missing:
            raise RuntimeError(
                f"Lambda misconfigured, missing: {', '.join(missing)} "
                "(Terraform's destination module sets them on the function)"
            )
        return cls(
            destination=str(values["DATASYNC_DESTINATION"]),
            destination_queue_url=str(values["DATASYNC_DESTINATION_QUEUE_URL"]),
            dead_letter_queue_url=str(values["DATASYNC_DEAD_LETTER_QUEUE_URL"]),
            max_receive_count=int(str(values["DATASYNC_MAX_RECEIVE_COUNT"])),
            analytics_hash_key=_key(values["DATASYNC_ANALYTICS_HASH_KEY"]),
            log_level=str(values["DATASYNC_LOG_LEVEL"]),
            aws_region=str(values["AWS_REGION"]),
            buffer_queue_url=values["DATASYNC_BUFFER_QUEUE_URL"],
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
    aws_region: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> IntakeConfig:
        values = _environment(env)
        try:
            routes = {
                destination: IntakeRoute(route["queue_url"], route["buffer_queue_url"])
                for destination, route in json.loads(values["DATASYNC_INTAKE_ROUTES"] or "").items()
            }
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RuntimeError(
                "Lambda misconfigured: DATASYNC_INTAKE_ROUTES must be JSON "
                '{"<destination>": {"queue_url": ..., "buffer_queue_url": ...}} '
                f"(Terraform's intake module sets it; {type(exc).__name__})"
            ) from None
        return cls(
            routes=routes,
            analytics_hash_key=_key(values["DATASYNC_ANALYTICS_HASH_KEY"]),
            log_level=str(values["DATASYNC_LOG_LEVEL"]),
            aws_region=str(values["AWS_REGION"]),
        )
