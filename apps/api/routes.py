"""HTTP routes: a thin adapter from requests to contract events on the bus."""

from __future__ import annotations

import re
import uuid
from typing import Any, TypeVar

from flask import Blueprint, Response, current_app, g, jsonify, request
from pydantic import BaseModel
from werkzeug.exceptions import ClientDisconnected

from apps.api.errors import ApiError, FieldError, retry_after_header
from apps.api.schemas import Accepted, HealthStatus, ReadyStatus
from datasync.contract import (
    AnyEvent,
    UserChanges,
    UserCreated,
    UserCreatedData,
    UserDeleted,
    UserDeletedData,
    UserProfile,
    UserUpdated,
    UserUpdatedData,
)
from datasync.contract.events import now_utc

M = TypeVar("M", bound=BaseModel)

users = Blueprint("users", __name__, url_prefix="/v1/users")
health = Blueprint("health", __name__)

# Namespace for deterministic ids derived from Idempotency-Key (fixed forever: changing it
# would give a retried request a new event id and so a duplicate downstream).
IDEMPOTENCY_NAMESPACE = uuid.UUID("8f2d3c4e-6a1b-5c7d-9e0f-1a2b3c4d5e6f")
# Visible ASCII, no spaces: HTTP strips a header value's outer spaces, so a key with spaces
# could not round-trip exactly. The OpenAPI document publishes these same patterns.
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]{1,255}$"
# The canonical, hyphenated form only (uuid.UUID alone would also take braces, urn:, no hyphens).
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


@users.post("")
def create_user() -> tuple[Response, int]:
    caller = _authenticate()
    profile = _body(UserProfile)
    user_id = _new_id(caller, "user")
    event = UserCreated(
        data=UserCreatedData(user_id=user_id, **profile.model_dump()), **_envelope(caller)
    )
    return _publish(event)


@users.patch("/<user_id>")
def update_user(user_id: str) -> tuple[Response, int]:
    caller = _authenticate()
    uid = _path_uuid(user_id)
    changes = _body(UserChanges)
    sent = {name: getattr(changes, name) for name in changes.model_fields_set}
    event = UserUpdated(data=UserUpdatedData(user_id=uid, **sent), **_envelope(caller))
    return _publish(event)


@users.delete("/<user_id>")
def delete_user(user_id: str) -> tuple[Response, int]:
    caller = _authenticate()
    event = UserDeleted(data=UserDeletedData(user_id=_path_uuid(user_id)), **_envelope(caller))
    return _publish(event)


@health.get("/healthz")
def healthz() -> Response:
    return jsonify(HealthStatus().model_dump())  # never touches the bus: the process is alive


@health.get("/readyz")
def readyz() -> tuple[Response, int]:
    reason = current_app.extensions["datasync"].readiness.check()
    if reason is None:
        return jsonify(ReadyStatus(status="ready").model_dump(exclude_none=True)), 200
    return jsonify(ReadyStatus(status="unavailable", reason=reason).model_dump()), 503


@health.get("/openapi.json")
def openapi() -> Response:
    return jsonify(current_app.extensions["datasync"].openapi)


# -- helpers -------------------------------------------------------------------------------
def _authenticate() -> str:
    state = current_app.extensions["datasync"]
    caller = state.api_keys.authenticate()
    g.caller = caller
    wait = state.rate_limiter.acquire(caller)
    if wait > 0:
        raise ApiError(
            429,
            "Too Many Requests",
            "This API key is over its request rate; retry after Retry-After seconds.",
            headers={"Retry-After": retry_after_header(wait)},
        )
    return caller


def _body(model: type[M]) -> M:
    if request.mimetype != "application/json":
        raise ApiError(415, "Unsupported Media Type", "Send the body as application/json.")
    if request.content_length is None:
        # A chunked body has no length up front, and werkzeug would cut one that is over the
        # limit at the limit without a word (a 413 that never happens): refuse it instead.
        raise ApiError(
            411, "Length Required", "Send the body with a Content-Length header, not chunked."
        )
    try:
        body = request.get_data(cache=False)
    except ClientDisconnected as exc:
        # werkzeug raises this from inside the stream's own error: a TimeoutError there means
        # the server gave up waiting (gunicorn_worker.RequestTimeout), else the body ended early.
        if isinstance(exc.__context__, TimeoutError):
            raise ApiError(
                408, "Request Timeout", "The request body did not arrive in time."
            ) from None
        raise ApiError(
            400, "Incomplete body", "The request body ended before its Content-Length."
        ) from None
    # Validating the raw bytes lets pydantic report malformed JSON (400) and field errors
    # (422) in one pass; the 64 KiB limit (413) applies while reading.
    return model.model_validate_json(body or b"")


def _path_uuid(value: str) -> uuid.UUID:
    if re.fullmatch(UUID_PATTERN, value) is None:
        raise ApiError(
            422,
            "Invalid request",
            "The user id in the path is not a UUID.",
            [FieldError(field="path.user_id", message="must be a UUID", type="uuid_parsing")],
        )
    return uuid.UUID(value)


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if re.fullmatch(IDEMPOTENCY_KEY_PATTERN, key) is None:
        raise ApiError(
            400,
            "Bad Idempotency-Key",
            "Idempotency-Key must be 1-255 visible ASCII characters (no spaces).",
        )
    return key


def _new_id(caller: str, purpose: str) -> uuid.UUID:
    """Random, or derived from the Idempotency-Key so that a retry gets the same id."""
    key = _idempotency_key()
    if key is None:
        return uuid.uuid4()
    scope = f"{purpose}|{caller}|{request.method}|{request.path}|{key}"
    return uuid.uuid5(IDEMPOTENCY_NAMESPACE, scope)


def _envelope(caller: str) -> dict[str, Any]:
    return {
        "event_id": _new_id(caller, "event"),
        "occurred_at": now_utc(),
        "correlation_id": g.correlation_id,
    }


def _publish(event: AnyEvent) -> tuple[Response, int]:
    # publish() returns only when the bus has accepted the event; otherwise PublishError
    # becomes a 503 (errors.py) and the client retries.
    current_app.extensions["datasync"].publisher.publish(event)
    g.event_id = str(event.event_id)
    body = Accepted(user_id=event.user_id, event_id=event.event_id)
    return jsonify(body.model_dump(mode="json")), 202
