"""Small builders for records and events used across test layers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from datasync.contract import DestinationRecord

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def version(seconds: float, event_id: uuid.UUID | None = None) -> str:
    at = T0 + timedelta(seconds=seconds)
    return f"{at.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}#{event_id or uuid.uuid4()}"


def record(
    destination: str = "crm",
    key: str = "user-1",
    at: float = 0,
    op: str = "upsert",
    event_id: uuid.UUID | None = None,
    **fields: Any,
) -> DestinationRecord:
    event_id = event_id or uuid.uuid4()
    return DestinationRecord(
        destination=destination,  # type: ignore[arg-type]
        event_id=event_id,
        event_type="UserDeleted" if op == "delete" else "UserUpdated",
        correlation_id="test",
        key=key,
        version=version(at, event_id),
        op=op,  # type: ignore[arg-type]
        fields=fields,
    )
