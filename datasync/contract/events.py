"""Business events, version 1: the envelope and the three user events.

This module is the single definition of what travels on the bus. The API builds these
objects, the Lambdas parse them back, and the JSON Schemas in ``schemas/`` are generated
from them (``datasync schemas --write``). Changing a field here is a contract change:
additive, optional fields keep ``SCHEMA_VERSION``; anything else needs a new version.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    TypeAdapter,
    field_serializer,
    model_serializer,
    model_validator,
)

from datasync.contract.countries import ISO_3166_ALPHA2

SCHEMA_VERSION = 1
EVENT_SOURCE = "datasync.api"
EventType = Literal["UserCreated", "UserUpdated", "UserDeleted"]

MAX_ATTRIBUTES = 20
CORRELATION_ID_PATTERN = r"^[A-Za-z0-9._:\-]{1,128}$"


def format_time(value: datetime) -> str:
    """UTC, fixed width, so that string order is time order."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _known_country(value: str) -> str:
    if value not in ISO_3166_ALPHA2:
        raise ValueError(f"'{value}' is not an ISO 3166-1 alpha-2 country code")
    return value


def _small_map(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_ATTRIBUTES:
        raise ValueError(f"at most {MAX_ATTRIBUTES} attributes are allowed")
    return value


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Country = Annotated[
    str,
    BeforeValidator(_upper),
    StringConstraints(pattern=r"^[A-Z]{2}$"),
    AfterValidator(_known_country),
    Field(description="ISO 3166-1 alpha-2 code, e.g. DE", examples=["DE"]),
]
AttributeKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
AttributeValue = Annotated[str, StringConstraints(max_length=256)]
Attributes = Annotated[
    dict[AttributeKey, AttributeValue],
    AfterValidator(_small_map),
    Field(description=f"Flat string map, at most {MAX_ATTRIBUTES} entries"),
]
CorrelationId = Annotated[str, StringConstraints(pattern=CORRELATION_ID_PATTERN)]
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UserProfile(_Strict):
    """The fields a client sends to register a user (``POST /v1/users``)."""

    email: EmailStr
    name: Name
    marketing_opt_in: bool = False
    country: Country | None = None
    attributes: Attributes | None = None


class UserChanges(_Strict):
    """A partial update (``PATCH /v1/users/{id}``): only the fields sent are changed.

    ``country`` and ``attributes`` may be sent as ``null`` to clear them. Opting in to
    marketing needs ``email`` and ``name`` in the same request, because the marketing
    destination forgets contact details when a user opts out and cannot recover them
    from a partial update.
    """

    email: EmailStr | None = None
    name: Name | None = None
    marketing_opt_in: bool | None = None
    country: Country | None = None
    attributes: Attributes | None = None

    @model_validator(mode="after")
    def _check(self) -> UserChanges:
        if not self.model_fields_set:
            raise ValueError("send at least one field to change")
        for required in ("email", "name", "marketing_opt_in"):
            if required in self.model_fields_set and getattr(self, required) is None:
                raise ValueError(f"{required} cannot be null")
        if self.marketing_opt_in and not {"email", "name"} <= self.model_fields_set:
            raise ValueError("marketing_opt_in=true needs email and name in the same request")
        return self

    @model_serializer(mode="wrap")
    def _only_sent_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A partial update must stay partial on the wire: an unsent field is not a null.
        return {k: v for k, v in handler(self).items() if k in self.model_fields_set}

    def changed(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class UserCreatedData(UserProfile):
    user_id: UUID


class UserUpdatedData(UserChanges):
    user_id: UUID

    @model_serializer(mode="wrap")
    def _only_sent_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        sent = self.model_fields_set | {"user_id"}
        return {k: v for k, v in handler(self).items() if k in sent}

    def changed(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump(mode="json").items() if k != "user_id"}


class UserDeletedData(_Strict):
    user_id: UUID


class _Envelope(_Strict):
    event_id: UUID = Field(description="Unique per event; consumers deduplicate on it")
    schema_version: Literal[1] = SCHEMA_VERSION
    occurred_at: UtcDatetime
    correlation_id: CorrelationId

    @field_serializer("occurred_at")
    def _fixed_width_time(self, value: datetime) -> str:
        # Always microseconds and "Z": the same instant always serialises the same way.
        return format_time(value)

    @property
    def user_id(self) -> UUID:
        return self.data.user_id  # type: ignore[attr-defined]

    @property
    def version(self) -> str:
        """Total order between events of one user: time first, event id breaks ties."""
        return f"{format_time(self.occurred_at)}#{self.event_id}"


class UserCreated(_Envelope):
    event_type: Literal["UserCreated"] = "UserCreated"
    data: UserCreatedData


class UserUpdated(_Envelope):
    event_type: Literal["UserUpdated"] = "UserUpdated"
    data: UserUpdatedData


class UserDeleted(_Envelope):
    event_type: Literal["UserDeleted"] = "UserDeleted"
    data: UserDeletedData


Event = Annotated[UserCreated | UserUpdated | UserDeleted, Field(discriminator="event_type")]
EVENT_ADAPTER: TypeAdapter[UserCreated | UserUpdated | UserDeleted] = TypeAdapter(Event)

_EVENT_MODELS = {"UserCreated": UserCreated, "UserUpdated": UserUpdated, "UserDeleted": UserDeleted}


def parse_event(raw: str | bytes | dict[str, Any]) -> UserCreated | UserUpdated | UserDeleted:
    """Validate an event from JSON text or a decoded dict. Raises pydantic.ValidationError."""
    if isinstance(raw, dict):
        return EVENT_ADAPTER.validate_python(raw)
    return EVENT_ADAPTER.validate_json(raw)


def event_to_json(event: UserCreated | UserUpdated | UserDeleted) -> str:
    return event.model_dump_json()


def now_utc() -> datetime:
    return datetime.now(UTC)


def is_valid_correlation_id(value: str) -> bool:
    return re.fullmatch(CORRELATION_ID_PATTERN, value) is not None
