"""Response shapes of the API (requests are the contract's UserProfile / UserChanges)."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field


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
