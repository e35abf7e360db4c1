"""The shared, versioned event contract (ground floor: imports nothing from datasync)."""

from datasync.contract.events import (
    EVENT_SOURCE,
    SCHEMA_VERSION,
    UserChanges,
    UserCreated,
    UserCreatedData,
    UserDeleted,
    UserDeletedData,
    UserProfile,
    UserUpdated,
    UserUpdatedData,
    event_to_json,
    parse_event,
)
from datasync.contract.records import (
    DESTINATIONS,
    Destination,
    DestinationRecord,
    RecordPack,
    pack_records,
    parse_queue_message,
)

AnyEvent = UserCreated | UserUpdated | UserDeleted

__all__ = [
    "DESTINATIONS",
    "EVENT_SOURCE",
    "SCHEMA_VERSION",
    "AnyEvent",
    "Destination",
    "DestinationRecord",
    "RecordPack",
    "UserChanges",
    "UserCreated",
    "UserCreatedData",
    "UserDeleted",
    "UserDeletedData",
    "UserProfile",
    "UserUpdated",
    "UserUpdatedData",
    "event_to_json",
    "pack_records",
    "parse_event",
    "parse_queue_message",
]
