"""Business events, version 1: the envelope and the three user events.

This module is the single definition of what travels on the bus. The API builds these
objects, the Lambdas parse them back, and the JSON Schemas in ``schemas/`` are generated
from them (``datasync schemas --write``). Changing a field here is a contract change:
additive, optional fields keep ``SCHEMA_VERSION``; anything else needs a new version.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from datasync.contract.consent import opt_in_problem
from datasync.contract.countries import ISO_3166_ALPHA2

SCHEMA_VERSION = 1
EVENT_SOURCE = "datasync.api"
EventType = Literal["UserCreated", "UserUpdated", "UserDeleted"]

MAX_ATTRIBUTES = 20
CORRELATION_ID_PATTERN = r"^[A-Za-z0-9._:\-]{1,128}$"

# Text a person typed may hold any script, but no control characters: C0, DEL, C1, the
# line/paragraph separators and the bidirectional overrides and isolates that make text
# display in another order than it is stored ("Trojan Source"). Names also may not start or
# end with white space. These patterns are what the validators use *and* what the published
# schemas say, in a syntax that Python, Rust (pydantic-core) and JSON Schema read alike.
_CONTROL = r"\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_SPACE = r" \xa0\u1680\u2000-\u200a\u202f\u205f\u3000"
NAME_PATTERN = rf"^[^{_CONTROL}{_SPACE}](?:[^{_CONTROL}]*[^{_CONTROL}{_SPACE}])?$"
TEXT_PATTERN = rf"^[^{_CONTROL}]*$"
# Emails are ASCII only: no look-alike letters from other scripts (a Cyrillic "а" in
# "pаypal.com"), and every destination can store and send them. An internationalised domain
# is accepted in its ASCII (xn--) form. email-validator also refuses a domain without a dot
# and the special-use names (RFC 6761: .test, .localhost ...); the published pattern says so.
_ANY_CASE = "|".join(
    "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in name)
    for name in SPECIAL_USE_DOMAIN_NAMES
)
ASCII_EMAIL = r"^[!-~]+$"
EMAIL_PATTERN = rf"^(?![!-~]*[@.](?:{_ANY_CASE})$)[!-~]+@[!-~]+\.[!-~]+$"
MAX_EMAIL_LENGTH = 254

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
# A version is "<occurred_at, TIME_FORMAT>#<event id>": string order is time order, the event
# id breaks ties. Its event id is the record's own (checked by DestinationRecord).
VERSION_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z"
    r"#[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)
_VERSION = re.compile(VERSION_PATTERN)
# How far ahead of this host's clock an event may have occurred. The API stamps occurred_at
# with its own clock (clients cannot set it), so anything later is a clock off or a forgery: a
# time far ahead would outrank every real update until then. Five minutes is also how far
# AWS lets a signed request's time stray: a host whose clock is off by more cannot call AWS.
MAX_CLOCK_SKEW = timedelta(minutes=5)
VERSION_SHAPE = "<occurred_at as YYYY-MM-DDTHH:MM:SS.ffffffZ>#<event id>"


def format_time(value: datetime) -> str:
    """UTC, fixed width, so that string order is time order."""
    return value.astimezone(UTC).strftime(TIME_FORMAT)


def make_version(occurred_at: datetime, event_id: UUID) -> str:
    """The version of an event and of its records (see VERSION_PATTERN)."""
    return f"{format_time(occurred_at)}#{event_id}"


def version_time(version: str) -> datetime | None:
    """When the event of a ``version`` (an event's, or its records') occurred; None if the
    version is not ``<format_time>#<event id>``."""
    if _VERSION.fullmatch(version) is None:
        return None
    try:  # fromisoformat reads the fixed-width shape, about 30 times faster than strptime
        return datetime.fromisoformat(version.partition("#")[0])
    except ValueError:  # the shape of a time, not a time (month 13)
        return None


def future_problem(at: datetime, now: datetime | None = None) -> str | None:
    """Why a time cannot be when an event occurred (it is ahead of this host's clock), or None."""
    if at > (now or now_utc()) + MAX_CLOCK_SKEW:
        minutes = int(MAX_CLOCK_SKEW.total_seconds() // 60)
        return f"more than {minutes} minutes ahead of this host's clock"
    return None


def version_problem(version: str, event_id: UUID, now: datetime | None = None) -> str | None:
    """Why ``version`` is not one a producer writes for the event ``event_id``, or None.

    A forged version could otherwise outrank every real one ("~~~~" sorts after any time)."""
    at = version_time(version)
    if at is None:
        return f"not {VERSION_SHAPE}"
    if version.partition("#")[2] != str(event_id):
        return "its event id is not the record's event_id"
    problem = future_problem(at, now)
    return f"its time is {problem}" if problem else None


def _known_country(value: str) -> str:
    if value not in ISO_3166_ALPHA2:
        raise ValueError("not an ISO 3166-1 alpha-2 country code (upper case, e.g. DE)")
    return value


def _valid_email(value: str) -> str:
    if re.fullmatch(ASCII_EMAIL, value) is None:
        raise ValueError(
            "value is not a valid email address: use ASCII only (an internationalised "
            "domain in its xn-- form)"
        )
    try:
        return validate_email(value, check_deliverability=False, allow_smtputf8=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"value is not a valid email address: {exc}") from None


def _matches(pattern: str, problem: str) -> AfterValidator:
    """Check ``pattern`` with a message a person can act on (not the pattern itself)."""

    def check(value: str) -> str:
        if re.fullmatch(pattern, value) is None:
            raise ValueError(problem)
        return value

    return AfterValidator(check)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


Email = Annotated[
    str,
    StringConstraints(max_length=MAX_EMAIL_LENGTH),
    AfterValidator(_valid_email),
    Field(json_schema_extra={"format": "email", "pattern": EMAIL_PATTERN}),
]
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200),
    _matches(NAME_PATTERN, "no control characters, and no white space at either end"),
    Field(json_schema_extra={"pattern": NAME_PATTERN}),
]
Country = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{2}$"),
    AfterValidator(_known_country),
    WithJsonSchema(
        {
            "type": "string",
            "enum": sorted(ISO_3166_ALPHA2),
            "description": "ISO 3166-1 alpha-2 code, upper case, e.g. DE",
            "examples": ["DE"],
        }
    ),
]
ATTRIBUTE_KEY_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
AttributeKey = Annotated[str, StringConstraints(pattern=ATTRIBUTE_KEY_PATTERN)]
AttributeValue = Annotated[
    str, StringConstraints(max_length=256), _matches(TEXT_PATTERN, "no control characters")
]
Attributes = Annotated[
    dict[AttributeKey, AttributeValue],
    Field(max_length=MAX_ATTRIBUTES),
    # Keys are constrained by propertyNames (pydantic would write patternProperties, which
    # leaves any other key unconstrained, unlike the validator).
    WithJsonSchema(
        {
            "type": "object",
            "description": f"Flat string map, at most {MAX_ATTRIBUTES} entries",
            "maxProperties": MAX_ATTRIBUTES,
            "propertyNames": {"pattern": ATTRIBUTE_KEY_PATTERN},
            "additionalProperties": {"type": "string", "maxLength": 256, "pattern": TEXT_PATTERN},
        }
    ),
]
CorrelationId = Annotated[str, StringConstraints(pattern=CORRELATION_ID_PATTERN)]
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]


def _not_in_the_future(value: datetime) -> datetime:
    problem = future_problem(value)
    if problem:
        raise ValueError(problem)
    return value


# The published shape; DestinationRecord checks it with version_problem (and more: its event id,
# its time), which says what is wrong in words.
Version = Annotated[str, Field(json_schema_extra={"pattern": VERSION_PATTERN})]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UserProfile(_Strict):
    """The fields a client sends to register a user (``POST /v1/users``)."""

    email: Email
    name: Name
    marketing_opt_in: StrictBool = False
    country: Country | None = None
    attributes: Attributes | None = None


def _changes_schema(schema: dict[str, Any]) -> None:
    """What the validators of UserChanges check, said in JSON Schema."""
    for prop in schema["properties"].values():
        prop.pop("default", None)  # an absent field is "unchanged", not a default value
    schema["minProperties"] = 1
    schema["if"] = {
        "properties": {"marketing_opt_in": {"const": True}},
        "required": ["marketing_opt_in"],
    }
    schema["then"] = {"required": ["email", "name"]}


class UserChanges(_Strict):
    """A partial update (``PATCH /v1/users/{id}``): only the fields sent are changed.

    ``country`` and ``attributes`` may be sent as ``null`` to clear them; ``email``, ``name``
    and ``marketing_opt_in`` may not (leave a field out to keep it). Opting in to marketing
    needs ``email`` and ``name`` in the same request, because the marketing destination
    forgets contact details when a user opts out and cannot recover them from a partial update.
    """

    model_config = ConfigDict(json_schema_extra=_changes_schema)

    # SkipJsonSchema: None is only the "not sent" marker in Python, never a valid value.
    email: Email | SkipJsonSchema[None] = None
    name: Name | SkipJsonSchema[None] = None
    marketing_opt_in: StrictBool | SkipJsonSchema[None] = None
    country: Country | None = None
    attributes: Attributes | None = None

    @field_validator("email", "name", "marketing_opt_in", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null: leave the field out to keep its value")
        return value

    @model_validator(mode="after")
    def _check(self) -> UserChanges:
        if not self.model_fields_set:
            raise ValueError("send at least one field to change")
        problem = opt_in_problem(self.model_fields_set, self.marketing_opt_in)
        if problem:
            raise ValueError(problem)
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
    occurred_at: Annotated[UtcDatetime, AfterValidator(_not_in_the_future)]
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
        return make_version(self.occurred_at, self.event_id)


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
