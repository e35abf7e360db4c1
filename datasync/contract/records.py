"""Destination records, version 1: what a Lambda puts on a destination queue.

A record is the per-destination shape of one business event. Consumers apply records to
stores without knowing about business events, so a destination can change its transform
without touching the consumers.

A destination queue message carries either one record (the first shape, still accepted: rolling
upgrades, DLQ redrives of older messages, records dead-lettered one by one) or a **record pack**:
the records one Lambda invocation made for its destination, in one message. One message per
invocation instead of one per record is what keeps the queues short and the calls few.

Consumers trust nothing of a message's body: ``parse_queue_message`` reads any text (nested
100,000 deep, 256 KiB of garbage, wrong JSON types) and either returns a valid pack or record or
raises pydantic's ValidationError, and a record's ``version`` must be the one its producer
writes (``version_problem``), so that a forged record cannot outrank the real ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Annotated, Any, Literal, Self
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    Tag,
    TypeAdapter,
    model_validator,
)

from datasync.contract.events import (
    SCHEMA_VERSION,
    CorrelationId,
    EventType,
    Version,
    version_problem,
)

Destination = Literal["crm", "marketing", "analytics"]
DESTINATIONS: tuple[Destination, ...] = ("crm", "marketing", "analytics")

# SQS takes 256 KiB per message, body and attributes together. A pack's body stays under
# MAX_PACK_BYTES and its trace attributes (two ids per record) under 37 KiB at MAX_PACK_RECORDS.
MAX_PACK_BYTES = 192 * 1024
MAX_PACK_RECORDS = 100
# A pack's body without its records: {"schema_version":1,"destination":"marketing","records":[]}
PACK_ENVELOPE_BYTES = 64


class DestinationRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    destination: Destination
    event_id: UUID
    event_type: EventType
    correlation_id: CorrelationId
    key: str = Field(min_length=1, max_length=128, description="user id, or a pseudonym")
    version: Version = Field(
        description="orders records of one key: <occurred_at>#<event_id>, as the event's version"
    )
    op: Literal["upsert", "delete", "append"] = Field(
        description="upsert: merge fields; delete: erase the key for good; append: log entry"
    )
    fields: dict[str, JsonValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _version_of_its_event(self) -> Self:
        problem = version_problem(self.version, self.event_id)
        if problem:
            raise ValueError(f"version: {problem}")
        return self

    @classmethod
    def from_json(cls, text: str | bytes) -> DestinationRecord:
        return cls.model_validate_json(text)

    @property
    def trace(self) -> str:
        """``event_id/correlation_id``: how logs name a record (no personal data)."""
        return f"{self.event_id}/{self.correlation_id}"

    def message_attributes(self) -> dict[str, Any]:
        """SQS message attributes: lets operators trace a message without reading its body."""
        return {
            "event_id": {"DataType": "String", "StringValue": str(self.event_id)},
            "correlation_id": {"DataType": "String", "StringValue": self.correlation_id},
            "event_type": {"DataType": "String", "StringValue": self.event_type},
            "schema_version": {"DataType": "Number", "StringValue": str(self.schema_version)},
        }


class RecordPack(BaseModel):
    """Several records of one destination in one queue message; each is still applied, retried
    and dead-lettered on its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    destination: Destination
    records: list[DestinationRecord] = Field(min_length=1, max_length=MAX_PACK_RECORDS)

    @model_validator(mode="after")
    def _one_destination(self) -> Self:
        others = sorted({r.destination for r in self.records} - {self.destination})
        if others:
            raise ValueError(f"a {self.destination} pack holds {', '.join(others)} records")
        return self

    def message_attributes(self) -> dict[str, Any]:
        """What an operator needs to trace a pack without reading its body: every event id and
        correlation id (comma-separated, in record order; neither can hold a comma)."""
        return {
            "record_count": {"DataType": "Number", "StringValue": str(len(self.records))},
            "event_ids": {
                "DataType": "String",
                "StringValue": ",".join(str(r.event_id) for r in self.records),
            },
            "correlation_ids": {
                "DataType": "String",
                "StringValue": ",".join(r.correlation_id for r in self.records),
            },
            "schema_version": {"DataType": "Number", "StringValue": str(self.schema_version)},
        }


def pack_records(records: Iterable[DestinationRecord]) -> Iterator[RecordPack]:
    """The records in as few packs as the size limits allow, in order (one record per pack
    at least, whatever its size: a record alone is bounded by the API's 64 KiB body)."""
    pending: list[DestinationRecord] = []
    size = PACK_ENVELOPE_BYTES
    for record in records:
        record_size = len(record.model_dump_json()) + 1  # and its comma
        if pending and (size + record_size > MAX_PACK_BYTES or len(pending) == MAX_PACK_RECORDS):
            yield RecordPack(destination=pending[0].destination, records=pending)
            pending, size = [], PACK_ENVELOPE_BYTES
        pending.append(record)
        size += record_size
    if pending:
        yield RecordPack(destination=pending[0].destination, records=pending)


def _message_kind(value: Any) -> str:
    if isinstance(value, RecordPack) or (isinstance(value, dict) and "records" in value):
        return "pack"
    return "record"


# One pass of pydantic's JSON parser, which has a nesting limit: the standard library's
# json.loads raises RecursionError on a body nested a few thousand deep.
_QUEUE_MESSAGE: TypeAdapter[RecordPack | DestinationRecord] = TypeAdapter(
    Annotated[
        Annotated[RecordPack, Tag("pack")] | Annotated[DestinationRecord, Tag("record")],
        Discriminator(_message_kind),
    ]
)


def parse_queue_message(text: str | bytes) -> RecordPack | DestinationRecord:
    """The body of a destination queue message: a pack, or a single record.

    Raises pydantic's ValidationError, and only that, when it is neither: not JSON, nested too
    deep, a wrong type anywhere, a version its producer would not write."""
    return _QUEUE_MESSAGE.validate_json(text)
