"""Destination records, version 1: what a Lambda puts on a destination queue.

A record is the per-destination shape of one business event. Consumers apply records to
stores without knowing about business events, so a destination can change its transform
without touching the consumers.
"""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from datasync.contract.events import SCHEMA_VERSION, CorrelationId, EventType

Destination = Literal["crm", "marketing", "analytics"]
DESTINATIONS: tuple[Destination, ...] = ("crm", "marketing", "analytics")


class DestinationRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    destination: Destination
    event_id: UUID
    event_type: EventType
    correlation_id: CorrelationId
    key: str = Field(min_length=1, max_length=128, description="user id, or a pseudonym")
    version: str = Field(min_length=1, description="orders records of one key")
    op: Literal["upsert", "delete", "append"] = Field(
        description="upsert: merge fields; delete: erase the key for good; append: log entry"
    )
    fields: dict[str, JsonValue] = Field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str | bytes) -> DestinationRecord:
        return cls.model_validate_json(text)

    def message_attributes(self) -> dict[str, Any]:
        """SQS message attributes: lets operators trace a message without reading its body."""
        return {
            "event_id": {"DataType": "String", "StringValue": str(self.event_id)},
            "correlation_id": {"DataType": "String", "StringValue": self.correlation_id},
            "event_type": {"DataType": "String", "StringValue": self.event_type},
            "schema_version": {"DataType": "Number", "StringValue": str(self.schema_version)},
        }
