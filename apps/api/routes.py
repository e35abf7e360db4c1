"""HTTP routes: a thin adapter from requests to contract events on the bus."""

from __future__ import annotations

import re
import uuid
from typing import TypeVar

from flask import Blueprint, Response, current_app, g, jsonify, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import ClientDisconnected

from apps.api.errors import (
    MAX_BATCH_BODY_BYTES,
    MAX_BODY_BYTES,
    ApiError,
    FieldError,
    bus_unavailable_detail,
    field_errors,
    retry_after_header,
)
from apps.api.schemas import (
    Accepted,
    BatchItemAccepted,
    BatchItemRefused,
    BatchResult,
    HealthStatus,
    Problem,
    ReadyStatus,
    UserBatch,
)
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
from datasync.core.bus import PublishError

M = TypeVar("M", bound=BaseModel)
E = TypeVar("E", UserCreated, UserUpdated, UserDeleted)

users = Blueprint("users", __name__, url_prefix="/v1/users")
# A blueprint prefix is joined with "/": the batch route's ":batch" needs a blueprint of its own.
batches = Blueprint("batches", __name__)
health = Blueprint("health", __name__)

# Namespace for deterministic ids derived from Idempotency-Key (fixed forever: changing it
# would give a retried request a new event id and so a duplicate downstream).
IDEMPOTENCY_NAMESPACE = uuid.UUID("8f2d3c4e-6a1b-5c7d-9e0f-1a2b3c4d5e6f")
# Visible ASCII, no spaces: HTTP strips a header value's outer spaces, so a key with spaces
# could not round-trip exactly. The OpenAPI document publishes these same patterns.
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]{1,255}$"
# The canonical, hyphenated form only (uuid.UUID alone would also take braces, urn:, no hyphens).
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
INVALID_USER = "This user failed validation; the other users of the batch were handled alone."


@users.post("")
def create_user() -> tuple[Response, int]:
    caller = _authenticate()
    profile = _body(UserProfile)
    return _publish(_created(profile, _new_id(caller, "user"), _new_id(caller, "event")))


@batches.post("/v1/users:batch")
def create_users() -> tuple[Response, int]:
    """Register up to 100 users; each is validated, published and answered on its own."""
    caller = _authenticate()
    _idempotency_key()  # a bad one is 400 even if no user of the batch is valid
    batch = _body(UserBatch, max_bytes=MAX_BATCH_BODY_BYTES)
    _rate_limit(caller, cost=len(batch.users) - 1)  # one token per user, the first one taken
    results: dict[int, BatchItemAccepted | BatchItemRefused] = {}
    events: dict[int, UserCreated] = {}
    for index, item in enumerate(batch.users):
        try:
            profile = UserProfile.model_validate(item)
        except ValidationError as exc:
            errors = field_errors(exc, f"body.users.{index}")
            results[index] = _refused(index, 422, "Invalid user", INVALID_USER, errors)
            continue
        events[index] = _created(
            profile, _new_id(caller, "user", index), _new_id(caller, "event", index)
        )
    published = current_app.extensions["datasync"].publisher.publish_many(list(events.values()))
    retry_after = 0.0
    for (index, event), outcome in zip(events.items(), published, strict=True):
        if isinstance(outcome, PublishError):
            retry_after = max(retry_after, outcome.retry_after)
            detail = bus_unavailable_detail("This user")
            results[index] = _refused(index, 503, "Event bus unavailable", detail)
        else:
            results[index] = BatchItemAccepted(
                index=index, user_id=event.user_id, event_id=event.event_id
            )
    return _batch_answer([results[index] for index in range(len(batch.users))], retry_after)


@users.patch("/<user_id>")
def update_user(user_id: str) -> tuple[Response, int]:
    caller = _authenticate()
    uid = _path_uuid(user_id)
    changes = _body(UserChanges)
    sent = {name: getattr(changes, name) for name in changes.model_fields_set}
    data = UserUpdatedData.model_construct(user_id=uid, **sent)
    return _publish(_event(UserUpdated, data, _new_id(caller, "event")))


@users.delete("/<user_id>")
def delete_user(user_id: str) -> tuple[Response, int]:
    caller = _authenticate()
    data = UserDeletedData.model_construct(user_id=_path_uuid(user_id))
    return _publish(_event(UserDeleted, data, _new_id(caller, "event")))


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
    caller = current_app.extensions["datasync"].api_keys.authenticate()
    g.caller = caller
    _rate_limit(caller)
    return caller


def _rate_limit(caller: str, cost: int = 1) -> None:
    if cost <= 0:
        return
    wait = current_app.extensions["datasync"].rate_limiter.acquire(caller, cost)
    if wait > 0:
        raise ApiError(
            429,
            "Too Many Requests",
            "This API key is over its request rate; retry after Retry-After seconds.",
            headers={"Retry-After": retry_after_header(wait)},
        )


def _body(model: type[M], max_bytes: int = MAX_BODY_BYTES) -> M:
    if request.mimetype != "application/json":
        raise ApiError(415, "Unsupported Media Type", "Send the body as application/json.")
    if request.content_length is None:
        # A chunked body has no length up front, and werkzeug would cut one that is over the
        # limit at the limit without a word (a 413 that never happens): refuse it instead.
        raise ApiError(
            411, "Length Required", "Send the body with a Content-Length header, not chunked."
        )
    request.max_content_length = max_bytes  # before reading: over it is 413, unread
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


def _new_id(caller: str, purpose: str, item: int | None = None) -> uuid.UUID:
    """Random, or derived from the Idempotency-Key so that a retry gets the same id.

    In a batch each user's ids are derived from the key and the user's index in the batch.
    """
    key = _idempotency_key()
    if key is None:
        return uuid.uuid4()
    scope = f"{purpose}|{caller}|{request.method}|{request.path}|{key}"
    if item is not None:
        scope += f"|{item}"
    return uuid.uuid5(IDEMPOTENCY_NAMESPACE, scope)


def _created(profile: UserProfile, user_id: uuid.UUID, event_id: uuid.UUID) -> UserCreated:
    data = UserCreatedData.model_construct(user_id=user_id, **dict(profile))
    return _event(UserCreated, data, event_id)


def _event(event_type: type[E], data: BaseModel, event_id: uuid.UUID) -> E:
    """The event around data that is valid already: validating it again would check the same
    fields twice (the email's validation costs most), and the envelope's values are ours.
    tests/unit/test_api.py checks that the result equals the validated event."""
    return event_type.model_construct(
        data=data, event_id=event_id, occurred_at=now_utc(), correlation_id=g.correlation_id
    )


def _publish(event: AnyEvent) -> tuple[Response, int]:
    # publish() returns only when the bus has accepted the event; otherwise PublishError
    # becomes a 503 (errors.py) and the client retries.
    current_app.extensions["datasync"].publisher.publish(event)
    g.event_id = str(event.event_id)
    body = Accepted(user_id=event.user_id, event_id=event.event_id)
    return Response(body.model_dump_json(), mimetype="application/json"), 202


def _batch_answer(
    results: list[BatchItemAccepted | BatchItemRefused], retry_after: float
) -> tuple[Response, int]:
    accepted = sum(isinstance(result, BatchItemAccepted) for result in results)
    g.batch = {"accepted": accepted, "refused": len(results) - accepted}
    body = BatchResult(results=results, **g.batch)
    response = Response(body.model_dump_json(exclude_none=True), mimetype="application/json")
    if retry_after:  # some users met an unavailable bus: when to send them again
        response.headers["Retry-After"] = retry_after_header(retry_after)
    return response, 202


def _refused(
    index: int, status: int, title: str, detail: str, errors: list[FieldError] | None = None
) -> BatchItemRefused:
    problem = Problem(
        title=title,
        status=status,
        detail=detail,
        instance=request.path,
        correlation_id=g.correlation_id,
        errors=errors,
    )
    return BatchItemRefused(index=index, status=status, problem=problem)
