"""Shapes of the API's answers, and of the batch request (its users are the contract's
UserProfile; single requests are UserProfile / UserChanges)."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class Accepted(BaseModel):
    user_id: UUID
    event_id: UUID
    status: Literal["accepted"] = "accepted"


class FieldError(BaseModel):
    field: str = Field(description="dotted path of the offending field, e.g. body.email")
    message: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details, served as application/problem+json."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    correlation_id: str | None = None
    errors: list[FieldError] | None = None


class HealthStatus(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyStatus(BaseModel):
    status: Literal["ready", "unavailable"]
    reason: str | None = Field(None, description="why not ready (only when unavailable)")


MAX_BATCH_USERS = 100


class UserBatch(BaseModel):
    """``POST /v1/users:batch``: the users are validated one by one, each refused on its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Objects, not UserProfiles, on purpose: a user that is not a valid profile is refused
    # alone (in its result), so the document must not call the whole request invalid.
    users: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_BATCH_USERS,
        description=f"1-{MAX_BATCH_USERS} users to register, each a UserProfile "
        "(#/components/schemas/UserProfile). One that is not is refused on its own (status "
        "422 in its result); the others are published.",
        json_schema_extra={"items": {"type": "object", "description": "a UserProfile"}},
    )


class BatchItemAccepted(BaseModel):
    index: int = Field(description="the user's position in the request's `users`")
    status: Literal[202] = 202
    user_id: UUID
    event_id: UUID


class BatchItemRefused(BaseModel):
    index: int = Field(description="the user's position in the request's `users`")
    status: Literal[422, 503] = Field(
        description="422: this user is invalid (`problem.errors` says why); 503: the event bus "
        "did not accept it (nothing was published): send it again"
    )
    problem: Problem


class BatchResult(BaseModel):
    accepted: int
    refused: int
    results: list[BatchItemAccepted | BatchItemRefused] = Field(
        description="one per user, in the order sent"
    )
