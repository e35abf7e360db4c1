"""End-to-end flows, run by the integration suite (own stack) and by `make e2e`."""

from __future__ import annotations

import json
import uuid

from datasync.contract import DESTINATIONS
from tests.pipeline import Pipeline, wait_until


def unique_email(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:8]}@example.com"


def user_lifecycle(pipeline: Pipeline) -> dict:
    """Create, update, opt out, delete one user; check every store after each step."""
    email = unique_email("lifecycle")
    created = pipeline.create_user(
        email=email, name="Ada Lovelace", marketing_opt_in=True, country="GB"
    )
    user_id = created["user_id"]

    crm = wait_until(lambda: pipeline.get("crm", user_id), what="crm record")
    assert crm["email"] == email and crm["country"] == "GB" and crm["marketing_opt_in"] is True
    marketing = wait_until(lambda: pipeline.get("marketing", user_id), what="marketing record")
    assert marketing["email"] == email and marketing["subscribed"] is True
    analytics = wait_until(lambda: pipeline.get("analytics", user_id), what="analytics events")
    assert [e["event_type"] for e in analytics["events"]] == ["UserCreated"]
    assert email not in json.dumps(analytics) and user_id not in json.dumps(analytics)

    update = pipeline.call(
        "PATCH", f"/v1/users/{user_id}", {"name": "Augusta Ada King", "country": "IE"}
    )
    assert update.status == 202, update.body
    wait_until(
        lambda: pipeline.get("crm", user_id)["name"] == "Augusta Ada King", what="crm update"
    )
    crm = pipeline.get("crm", user_id)
    assert crm["email"] == email and crm["country"] == "IE"  # untouched fields survive
    wait_until(
        lambda: pipeline.get("marketing", user_id)["country"] == "IE", what="marketing update"
    )

    opt_out = pipeline.call("PATCH", f"/v1/users/{user_id}", {"marketing_opt_in": False})
    assert opt_out.status == 202
    wait_until(
        lambda: pipeline.get("marketing", user_id)["subscribed"] is False, what="marketing removal"
    )
    marketing = pipeline.get("marketing", user_id)
    assert marketing["email"] is None and marketing["name"] is None

    delete = pipeline.call("DELETE", f"/v1/users/{user_id}")
    assert delete.status == 202
    for destination in ("crm", "marketing"):
        wait_until(
            lambda d=destination: pipeline.get(d, user_id)["deleted"], what=f"{destination} delete"
        )
    assert "email" not in pipeline.get("crm", user_id)
    events = wait_until(
        lambda: (
            len(pipeline.get("analytics", user_id)["events"]) == 4
            and pipeline.get("analytics", user_id)["events"]
        ),
        what="analytics log",
    )
    assert [e["event_type"] for e in events] == [
        "UserCreated",
        "UserUpdated",
        "UserUpdated",
        "UserDeleted",
    ]
    return {"user_id": user_id, "email": email}


def poison_event(pipeline: Pipeline) -> str:
    """An event the contract rejects, put straight on the bus, lands in every DLQ with a reason."""
    correlation_id = f"poison-{uuid.uuid4().hex[:8]}"
    detail = {
        "event_id": str(uuid.uuid4()),
        "schema_version": 1,
        "occurred_at": "2026-11-20T10:00:00Z",
        "correlation_id": correlation_id,
        "event_type": "UserCreated",
        "data": {"user_id": str(uuid.uuid4()), "email": "not-an-email", "name": "Mallory"},
    }
    response = pipeline.aws("events").put_events(
        Entries=[{
            "Source": "datasync.api", "DetailType": "UserCreated", "Detail": json.dumps(detail),
            "EventBusName": pipeline.env["DATASYNC_EVENT_BUS_NAME"],
        }]
    )  # fmt: skip
    assert response["FailedEntryCount"] == 0

    def dead_letter(destination: str):
        for message in pipeline.dlq_messages(destination):
            attributes = message.get("MessageAttributes", {})
            if attributes.get("correlation_id", {}).get("StringValue") == correlation_id:
                return attributes
        return None

    for destination in DESTINATIONS:
        attributes = wait_until(
            lambda d=destination: dead_letter(d), timeout=60, what=f"{destination} DLQ"
        )
        reason = attributes["failure_reason"]["StringValue"]
        assert "data.email" in reason and "not-an-email" not in reason
    return correlation_id
