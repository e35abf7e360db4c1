"""OpenAPI 3.1 document, generated from the pydantic models and patterns the API really uses.

Every status an operation can answer is listed with its headers; schemathesis checks the
running server against this document in `make test` (tests/integration/test_api_schemathesis.py).
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from apps.api.errors import MAX_BATCH_BODY_KIB, MAX_BODY_KIB
from apps.api.routes import IDEMPOTENCY_KEY_PATTERN
from apps.api.schemas import (
    Accepted,
    BatchResult,
    HealthStatus,
    Problem,
    ReadyStatus,
    UserBatch,
)
from datasync import __version__
from datasync.contract import UserChanges, UserProfile
from datasync.contract.events import CORRELATION_ID_PATTERN

REF = "#/components/schemas/{model}"
HEADER = "#/components/headers/{name}"

HEADERS: dict[str, dict[str, Any]] = {
    "X-Correlation-ID": {
        "description": "The request's correlation id: the one sent (X-Correlation-ID, X-Request-ID "
        "or traceparent's trace id), or a new one",
        "required": True,
        "schema": {"type": "string", "pattern": CORRELATION_ID_PATTERN},
    },
    "Retry-After": {
        "description": "Seconds to wait before retrying",
        "required": True,
        "schema": {"type": "string", "pattern": "^[1-9][0-9]*$"},
    },
    "WWW-Authenticate": {
        "description": "The authentication scheme to use",
        "required": True,
        "schema": {"type": "string"},
    },
}


def _headers(*names: str) -> dict[str, Any]:
    return {name: {"$ref": HEADER.format(name=name)} for name in ("X-Correlation-ID", *names)}


def _json(model: str, description: str, *headers: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": _headers(*headers),
        "content": {"application/json": {"schema": {"$ref": REF.format(model=model)}}},
    }


def _problem(description: str, *headers: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": _headers(*headers),
        "content": {"application/problem+json": {"schema": {"$ref": REF.format(model="Problem")}}},
    }


IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Same key, same ids: a retried request is not duplicated downstream. "
    "1-255 visible ASCII characters, no spaces; anything else is answered 400.",
    "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
}
CORRELATION_ID = {
    "name": "X-Correlation-ID",
    "in": "header",
    "required": False,
    "description": "Carried through every log line and queue message of this event. A value "
    f"that does not match {CORRELATION_ID_PATTERN} is not an error: it is replaced by a new "
    "id, which the X-Correlation-ID response header returns.",
    "schema": {"type": "string"},
}
REQUEST_ID = {
    "name": "X-Request-ID",
    "in": "header",
    "required": False,
    "description": "Used as the correlation id when X-Correlation-ID is absent or invalid "
    "(and passed over when it is invalid itself).",
    "schema": {"type": "string"},
}
TRACEPARENT = {
    "name": "traceparent",
    "in": "header",
    "required": False,
    "description": "W3C Trace Context: its trace id is the correlation id when neither "
    "X-Correlation-ID nor X-Request-ID is valid. An invalid traceparent is passed over.",
    "schema": {"type": "string"},
}
CORRELATION_HEADERS = [CORRELATION_ID, REQUEST_ID, TRACEPARENT]
USER_ID = {
    "name": "user_id",
    "in": "path",
    "required": True,
    "description": "A UUID in its canonical hyphenated form; anything else is answered 422",
    "schema": {"type": "string", "format": "uuid"},
}


def _write_operation(summary: str, body_model: str | None, with_path_id: bool) -> dict[str, Any]:
    responses = {
        "202": _json("Accepted", "The event bus accepted the event"),
        "400": _problem("Malformed JSON, or a bad Idempotency-Key"),
        "401": _problem(
            "Missing or wrong API key (in either header), or two different keys",
            "WWW-Authenticate",
        ),
        "408": _problem("The request body did not arrive in time"),
        "411": _problem("No Content-Length (a chunked body)"),
        "413": _problem(f"Body over {MAX_BODY_KIB} KiB"),
        "415": _problem("Body is not application/json"),
        "422": _problem("Validation failed; `errors` lists each field"),
        "429": _problem(
            "This API key is over its request rate, or this address sent too many wrong keys",
            "Retry-After",
        ),
        "503": _problem(
            "The event bus did not accept the event (nothing was published); retry after "
            "Retry-After seconds with the same Idempotency-Key",
            "Retry-After",
        ),
    }
    operation: dict[str, Any] = {
        "summary": summary,
        "security": [{"bearer": []}, {"apiKey": []}],
        "parameters": [IDEMPOTENCY_KEY, *CORRELATION_HEADERS],
        "responses": responses,
    }
    if with_path_id:
        operation["parameters"] = [*operation["parameters"], USER_ID]
    if body_model:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=body_model)}}},
        }
    else:  # no body is read: its size and type cannot matter
        for status in ("408", "411", "413", "415"):
            del responses[status]
    return operation


def _batch_operation() -> dict[str, Any]:
    summary = "Register up to 100 users (a UserCreated each)"
    operation = _write_operation(summary, "UserBatch", False)
    responses = operation["responses"]
    accepted = _json(
        "BatchResult",
        "The batch was read: each user has its result (202, or 422/503 with a problem), in order",
    )
    accepted["headers"]["Retry-After"] = {
        "description": "Present when some users met an unavailable bus (status 503 in their "
        "result): seconds to wait before sending them again",
        "required": False,
        "schema": HEADERS["Retry-After"]["schema"],
    }
    responses["202"] = accepted
    responses["413"] = _problem(f"Body over {MAX_BATCH_BODY_KIB} KiB")
    responses["422"] = _problem('The body is not `{"users": [...]}` with 1-100 users')
    responses["429"] = _problem(
        "This API key is over its request rate (a batch counts one request per user), or "
        "this address sent too many wrong keys",
        "Retry-After",
    )
    del responses["503"]  # the bus's answer is per user, in the 202
    operation["parameters"] = [
        {
            **IDEMPOTENCY_KEY,
            "description": "Same key, same ids for the same position: user i gets the ids "
            "derived from the key and i, so resending the same batch with the same key "
            "duplicates nothing downstream. 1-255 visible ASCII characters, no spaces; "
            "anything else is answered 400.",
        },
        *CORRELATION_HEADERS,
    ]
    return operation


def build_openapi() -> dict[str, Any]:
    _, schemas = models_json_schema(
        [
            (UserProfile, "validation"),
            (UserChanges, "validation"),
            (UserBatch, "validation"),
            (Accepted, "serialization"),
            (BatchResult, "serialization"),
            (Problem, "serialization"),
            (HealthStatus, "serialization"),
            (ReadyStatus, "serialization"),
        ],
        ref_template=REF,
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "datasync API",
            "version": __version__,
            "description": "Every response carries X-Correlation-ID and the security headers "
            "(nosniff, no-store, a CSP that allows nothing, DENY framing, no referrer).",
        },
        "paths": {
            "/v1/users": {
                "post": _write_operation("Register a user (UserCreated)", "UserProfile", False)
            },
            "/v1/users:batch": {"post": _batch_operation()},
            "/v1/users/{user_id}": {
                "patch": _write_operation("Change a user (UserUpdated)", "UserChanges", True),
                "delete": _write_operation("Erase a user (UserDeleted)", None, True),
            },
            "/healthz": {
                "get": {
                    "summary": "The process is alive (never touches the bus)",
                    "responses": {"200": _json("HealthStatus", "Alive")},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Ready for traffic: the bus answers and the breaker is closed",
                    "responses": {
                        "200": _json("ReadyStatus", "Ready"),
                        "503": _json("ReadyStatus", "Not ready; `reason` says why"),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "headers": _headers(),
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": schemas["$defs"],
            "headers": HEADERS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }
