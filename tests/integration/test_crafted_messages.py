"""Crafted messages put straight on every queue of the session stack, as someone inside the
network could send them (tests/crafted.py): bodies nested 100,000 deep, 250 KiB of garbage,
wrong JSON types, another destination's records, delivery attempts that are not numbers,
records with forged versions for a real user.

Each must end in the right DLQ with its failure_reason (the destination queues' in their
destination's, the buffer queues' in theirs, the intake queue's in every destination's); no
consumer dies or restarts; the forged records change nothing; and a real update sent after them
is applied in all three stores.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from datasync.contract import DESTINATIONS
from datasync.settings import queue_setting_name
from tests import crafted
from tests.flows import unique_email
from tests.integration.test_failures import (
    _applied,
    attributes_of,
    dead_letters,
    fresh_record,
    tag,
)
from tests.pipeline import Pipeline, wait_until

pytestmark = pytest.mark.integration

CONSUMER_REASONS = ("not a destination record or pack: ", "the delivery_attempt attribute")
LAMBDA_REASONS = ("invalid event: ", "not an EventBridge event")


def send_all(pipeline: Pipeline, url: str, bodies: Iterable[str], **attributes: str) -> None:
    sqs = pipeline.aws("sqs")
    message_attributes = {
        name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
    }
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=message_attributes)


def collect(pipeline: Pipeline, destination: str, bodies: set[str]) -> dict[str, dict[str, Any]]:
    """The dead letter of each of ``bodies`` in the destination's DLQ (removed from it), by body.

    A copy that arrives twice (delivery is at least once) counts once."""
    found: dict[str, dict[str, Any]] = {}

    def all_there() -> bool:
        for message in dead_letters(pipeline, destination, lambda m: m["Body"] in bodies):
            found[message["Body"]] = message
        return len(found) == len(bodies)

    missing = lambda: sorted(b[:60] for b in bodies - set(found))  # noqa: E731
    wait_until(all_there, timeout=120, interval=1, what=f"the {destination} DLQ: {missing()}")
    return found


def unexpected_failures(logs_dir: Path) -> int:
    """Lines of the consumers' safety net: the poison path must not need it."""
    return sum(
        (logs_dir / f"consumer-{d}.log").read_text(errors="replace").count("failed unexpectedly")
        for d in DESTINATIONS
    )


def test_crafted_messages_on_every_queue_go_to_their_dlq_and_nothing_else_changes(
    pipeline: Pipeline, stack: Any
) -> None:
    run = f"crafted-{tag()}"
    user_id = pipeline.create_user(
        email=unique_email("crafted"), name="Real Person", marketing_opt_in=True
    )["user_id"]
    for destination in DESTINATIONS:
        wait_until(
            lambda d=destination: pipeline.get(d, user_id), what=f"the user in {destination}"
        )
    consumers = {name: app.process.pid for name, app in stack.apps.items() if "consumer" in name}
    safety_net_before = unexpected_failures(stack.config.layout.logs_dir)

    from_consumers: dict[str, set[str]] = {}  # destination -> bodies its consumer dead-letters
    from_lambdas: dict[str, set[str]] = {}  # destination -> bodies its function dead-letters
    attempts: list[tuple[str, Any]] = []
    intake_bodies = set(crafted.event_bodies(f"{run}-intake").values())
    send_all(pipeline, pipeline.env["DATASYNC_INTAKE_QUEUE_URL"], intake_bodies)
    for destination in DESTINATIONS:
        queue = pipeline.queue_url(destination)
        bodies = {
            *crafted.record_bodies(destination, f"{run}-{destination}").values(),
            *crafted.forged_versions(destination, user_id, f"{run}-forged").values(),
        }
        send_all(pipeline, queue, bodies)
        for value in crafted.BAD_ATTEMPTS.values():
            record = fresh_record(destination, correlation_id=f"{run}-attempt-{len(attempts)}")
            attempts.append((destination, record))
            bodies.add(record.model_dump_json())
            send_all(pipeline, queue, [record.model_dump_json()], delivery_attempt=value)
        from_consumers[destination] = bodies
        buffer = set(crafted.event_bodies(f"{run}-buffer-{destination}").values())
        send_all(pipeline, pipeline.env[queue_setting_name(destination, "buffer_queue")], buffer)
        from_lambdas[destination] = buffer | intake_bodies

    # A real update after all of them: applied everywhere, whatever the forged records said.
    renamed = pipeline.call("PATCH", f"/v1/users/{user_id}", {"name": "Real Person Renamed"})
    assert renamed.status == 202, renamed.body
    wait_until(
        lambda: (pipeline.get("crm", user_id) or {}).get("name") == "Real Person Renamed",
        what="the update in crm",
    )
    wait_until(
        lambda: (pipeline.get("marketing", user_id) or {}).get("name") == "Real Person Renamed",
        what="the update in marketing",
    )
    wait_until(
        lambda: len((pipeline.get("analytics", user_id) or {}).get("events", [])) == 2,
        what="the update in analytics",
    )

    for destination in DESTINATIONS:
        dead = collect(
            pipeline, destination, from_consumers[destination] | from_lambdas[destination]
        )
        for body, message in dead.items():
            attributes = attributes_of(message)
            reason, stage = attributes["failure_reason"], attributes["failure_stage"]
            if body in from_consumers[destination]:
                assert stage == "consume", body[:80]
                assert reason.startswith(CONSUMER_REASONS) or " on the " in reason, reason
            else:
                assert stage == "transform", body[:80]
                assert reason.startswith(LAMBDA_REASONS), reason
            assert attributes["failure_receive_count"] == "1", f"poison is not retried: {reason}"

    for destination, record in attempts:
        assert not _applied(pipeline, destination, record), "a message with a bad attempt applied"
    for destination in ("crm", "marketing"):
        view = pipeline.get(destination, user_id)
        assert view and not view["deleted"], f"the forged delete erased the user in {destination}"
        assert crafted.FORGED_NAME not in json.dumps(view)
    assert {name: app.process.pid for name, app in stack.apps.items() if "consumer" in name} == (
        consumers
    ), "a consumer restarted"
    assert all(stack.apps[name].process.poll() is None for name in consumers)
    assert unexpected_failures(stack.config.layout.logs_dir) == safety_net_before
