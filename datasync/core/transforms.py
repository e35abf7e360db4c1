"""Per-destination transforms: pure functions from a business event to destination records.

crm        the full profile, merged field by field.
marketing  only people who opted in: email, name, country. Opting out or being deleted
           removes them; a partial update with none of those fields is not marketing's business.
analytics  pseudonymous: a keyed hash of the user id, the country, the event type and time.
           Never the email or the name.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from datasync.contract import (
    AnyEvent,
    Destination,
    DestinationRecord,
    UserCreated,
    UserDeleted,
    UserUpdated,
)
from datasync.contract.consent import marketing_fields
from datasync.contract.events import format_time


def pseudonym(user_id: str, key: bytes) -> str:
    """Stable, keyed pseudonym of a user id: joinable across events, not reversible."""
    return hmac.new(key, str(user_id).encode(), hashlib.sha256).hexdigest()


def _record(event: AnyEvent, destination: Destination, key: str, op: str, fields: dict[str, Any]):
    return DestinationRecord(
        destination=destination,
        event_id=event.event_id,
        event_type=event.event_type,
        correlation_id=event.correlation_id,
        key=key,
        version=event.version,
        op=op,  # type: ignore[arg-type]
        fields=fields,
    )


def to_crm(event: AnyEvent) -> list[DestinationRecord]:
    user_id = str(event.user_id)
    if isinstance(event, UserDeleted):
        return [_record(event, "crm", user_id, "delete", {})]
    fields = event.data.changed() if isinstance(event, UserUpdated) else _profile(event)
    return [_record(event, "crm", user_id, "upsert", fields)]


def to_marketing(event: AnyEvent) -> list[DestinationRecord]:
    user_id = str(event.user_id)
    if isinstance(event, UserDeleted):
        return [_record(event, "marketing", user_id, "delete", {})]
    changed = event.data.changed() if isinstance(event, UserUpdated) else _profile(event)
    # The consent rules (datasync.contract.consent): a "no" is a removal, not a terminal delete.
    fields = marketing_fields(changed)
    if fields is None:
        return []
    return [_record(event, "marketing", user_id, "upsert", fields)]


def make_analytics_transform(hash_key: bytes) -> Callable[[AnyEvent], list[DestinationRecord]]:
    if len(hash_key) < 16:
        raise ValueError("the analytics hash key must be at least 16 bytes")

    def to_analytics(event: AnyEvent) -> list[DestinationRecord]:
        fields = {
            "subject": pseudonym(str(event.user_id), hash_key),
            "event_type": event.event_type,
            "country": getattr(event.data, "country", None),
            "occurred_at": format_time(event.occurred_at),
        }
        return [_record(event, "analytics", str(event.event_id), "append", fields)]

    return to_analytics


def _profile(event: UserCreated) -> dict[str, Any]:
    return event.data.model_dump(mode="json", exclude={"user_id"})


def transform_for(
    destination: Destination, *, analytics_hash_key: bytes | None = None
) -> Callable[[AnyEvent], list[DestinationRecord]]:
    """The transform a destination's Lambda runs (one place that maps names to functions)."""
    if destination == "crm":
        return to_crm
    if destination == "marketing":
        return to_marketing
    if destination == "analytics":
        if analytics_hash_key is None:
            raise ValueError("the analytics transform needs a hash key")
        return make_analytics_transform(analytics_hash_key)
    raise ValueError(f"unknown destination {destination!r}")
