"""Crafted queue messages, as someone inside the network would put them on the queues.

Generated rather than kept as files (a body nested 100,000 deep, 250 KiB of garbage), from the
sample records and events in tests/fixtures, and the same for every test layer: the unit tests
feed them to each runtime, the integration test puts them on the queues of a running stack.
Every body holds ``tag`` so that a test can find its own messages in a shared DLQ.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from datasync.contract.events import format_time
from tests.conftest import FIXTURES, load_event

DEPTH = 100_000
GARBAGE_BYTES = 250 * 1024
# What the forged records write, so that a test can tell they did not land.
FORGED_NAME = "Mallory Forged"


def nested(tag: str, depth: int = DEPTH) -> str:
    """Valid JSON nested ``depth`` deep (json.loads meets it with RecursionError)."""
    return "[" * depth + json.dumps(tag) + "]" * depth


def garbage(tag: str, size: int = GARBAGE_BYTES) -> str:
    """``size`` bytes of printable text that is not JSON (SQS takes any XML character)."""
    rng = random.Random(tag)  # noqa: S311 - test data, not a secret
    alphabet = 'abcdefghijklmnopqrstuvwxyz{}[]":,0123456789 éü'
    text = f"{tag} " + "".join(rng.choice(alphabet) for _ in range(size))
    return text.encode()[:size].decode(errors="ignore")


def sample_record(destination: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "messages" / f"{destination}_record.json").read_text())


def forged_record(
    destination: str, key: str, tag: str, *, op: str = "upsert", version: str | None = None
) -> dict[str, Any]:
    """A record for ``key`` that would win over every real one, if its version were believed."""
    event_id = str(uuid.uuid4())
    fields: dict[str, Any] = {"name": FORGED_NAME}
    if destination == "marketing":
        fields = {"name": FORGED_NAME, "email": "mallory@example.com", "subscribed": True}
    return {
        **sample_record(destination),
        "event_id": event_id,
        "event_type": "UserDeleted" if op == "delete" else "UserUpdated",
        "correlation_id": tag,
        "key": key,
        "version": version if version is not None else "~~~~",
        "op": op,
        "fields": {} if op == "delete" else fields,
    }


def future_version(event_id: str, ahead: timedelta = timedelta(days=3650)) -> str:
    return f"{format_time(datetime.now(UTC) + ahead)}#{event_id}"


def forged_versions(destination: str, key: str, tag: str) -> dict[str, str]:
    """Forged records for ``key``, each poison for the shape of its version alone."""
    far = forged_record(destination, key, tag)
    far["version"] = future_version(far["event_id"])
    other = forged_record(destination, key, tag)
    other["version"] = f"{format_time(datetime.now(UTC))}#{uuid.uuid4()}"  # not its event id
    bodies = {
        "version ~~~~": forged_record(destination, key, tag),
        "version far in the future": far,
        "version of another event": other,
        "delete with version ~~~~": forged_record(destination, key, tag, op="delete"),
    }
    return {kind: json.dumps(body) for kind, body in bodies.items()}


def record_bodies(destination: str, tag: str) -> dict[str, str]:
    """Bodies a consumer of ``destination`` must dead-letter, by kind (none names a key)."""
    sample = sample_record(destination)
    other = {"crm": "marketing", "marketing": "analytics", "analytics": "crm"}[destination]
    bodies = {
        "nested 100,000 deep": nested(tag),
        "nested 100,000 deep in a record": json.dumps({**sample, "fields": {"x": "@"}}).replace(
            '"@"', nested(tag)
        ),
        "250 KiB of garbage": garbage(tag),
        "a string": json.dumps(tag),
        "a list": json.dumps([tag, 5]),
        "records not a list": json.dumps({"destination": destination, "records": tag}),
        "records of numbers": json.dumps({"destination": destination, "records": [1], "x": tag}),
        "wrong field types": json.dumps({**sample, "key": 5, "fields": [tag]}),
        "another destination's record": json.dumps({**sample_record(other), "correlation_id": tag}),
    }
    return bodies


# Values of the delivery_attempt attribute that are not an attempt (the body is a good record).
BAD_ATTEMPTS = {
    "superscript two": "²",
    "Arabic-Indic three": "٣",
    "negative": "-1",
    "zero": "0",
    "beyond SQS's maxReceiveCount": "1001",
    "huge": "9" * 5000,
    "not a number": "two",
}


def event_bodies(tag: str) -> dict[str, str]:
    """Bodies the intake and the destination functions must dead-letter, by kind."""
    envelope = load_event("eventbridge_user_created")
    future = json.loads(json.dumps(envelope))
    future["detail"]["event_id"] = str(uuid.uuid4())
    future["detail"]["correlation_id"] = tag
    future["detail"]["occurred_at"] = format_time(datetime.now(UTC) + timedelta(days=3650))
    return {
        "nested 100,000 deep": nested(tag),
        "detail nested 100,000 deep": json.dumps({**envelope, "detail": "@"}).replace(
            '"@"', nested(tag)
        ),
        "250 KiB of garbage": garbage(tag),
        "a list": json.dumps([tag]),
        "detail a number": json.dumps({"detail": 5, "id": tag}),
        "a record, not an event": json.dumps({**sample_record("crm"), "correlation_id": tag}),
        "occurred far in the future": json.dumps(future),
    }
