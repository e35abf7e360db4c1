"""Every error the API returns, in one place, as application/problem+json (RFC 9457)."""

from __future__ import annotations

import logging
import math
from typing import Any

from flask import Flask, Response, g, json, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from apps.api.schemas import FieldError, Problem
from datasync.core.bus import CIRCUIT_OPEN, PublishError

logger = logging.getLogger("datasync.api")

PROBLEM_JSON = "application/problem+json"
MAX_BODY_KIB = 64
MAX_BODY_BYTES = MAX_BODY_KIB * 1024
# A batch of 100 users: each is at most ~7 KB (20 attributes of 64 + 256 characters).
MAX_BATCH_BODY_KIB = 1024
MAX_BATCH_BODY_BYTES = MAX_BATCH_BODY_KIB * 1024
_DETAILS = {
    404: "No such resource. See /openapi.json for the routes this API serves.",
    405: "This method is not allowed here; the Allow header lists the ones that are.",
}


class ApiError(Exception):
    """An error a view raises on purpose: status, title, detail and optional field errors."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.errors, self.headers = errors, headers


def field_errors(exc: ValidationError, prefix: str) -> list[FieldError]:
    # include_input=False: error payloads and logs must not echo personal data back.
    return [
        FieldError(
            field=".".join([prefix, *(str(p) for p in err["loc"])]),
            message=err["msg"],
            type=err["type"],
        )
        for err in exc.errors(include_input=False, include_url=False)
    ]


def problem(
    status: int,
    title: str,
    detail: str | None = None,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = Problem(
        title=title,
        status=status,
        detail=detail,
        instance=request.path,
        correlation_id=g.get("correlation_id"),
        errors=errors,
    )
    response = Response(
        json.dumps(body.model_dump(mode="json", exclude_none=True)), status, mimetype=PROBLEM_JSON
    )
    response.headers.update(headers or {})
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return problem(exc.status, exc.title, exc.detail, exc.errors, exc.headers)

    @app.errorhandler(ValidationError)
    def _invalid_body(exc: ValidationError) -> Response:
        if any(err["type"] == "json_invalid" for err in exc.errors()):
            return problem(400, "Malformed JSON", "The request body is not valid JSON.")
        return problem(
            422, "Invalid request", "The request body failed validation.", field_errors(exc, "body")
        )

    @app.errorhandler(PublishError)
    def _bus_unavailable(exc: PublishError) -> Response:
        if exc.code != CIRCUIT_OPEN:  # while the circuit is open, the request line says it all
            logger.error(
                "event not accepted by the bus", extra={"code": exc.code, "error": str(exc)}
            )
        return problem(
            503,
            "Event bus unavailable",
            bus_unavailable_detail("The event"),
            headers={"Retry-After": retry_after_header(exc.retry_after)},
        )

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        headers: dict[str, Any] = dict(exc.get_headers())
        headers.pop("Content-Type", None)
        detail = _DETAILS.get(exc.code or 0, exc.description)
        if exc.code == 413:
            limit = (request.max_content_length or MAX_BODY_BYTES) // 1024
            detail = f"The request body is larger than {limit} KiB."
        return problem(exc.code or 500, exc.name, detail, headers=headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        logger.exception("unhandled error")
        return problem(500, "Internal Server Error", "An unexpected error occurred.")


def bus_unavailable_detail(what: str) -> str:
    return (
        f"{what} was not accepted; nothing was published. Retry after Retry-After seconds "
        "with the same Idempotency-Key to avoid duplicates."
    )


def retry_after_header(seconds: float) -> str:
    """Retry-After is whole seconds, at least 1: a 0 would invite an immediate retry storm."""
    return str(max(1, math.ceil(seconds)))
