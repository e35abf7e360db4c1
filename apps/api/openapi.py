"""OpenAPI 3.1 document, generated from the pydantic models the API really uses."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from apps.api.schemas import Accepted, Problem
from datasync import __version__
from datasync.contract import UserChanges, UserProfile

REF = "#/components/schemas/{model}"


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": REF.format(model="Problem")}}},
    }


def _write_operation(summary: str, body_model: str | None, with_path_id: bool) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "security": [{"bearer": []}, {"apiKey": []}],
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Same key, same event id: retries are not duplicated downstream",
                "schema": {"type": "string", "maxLength": 255},
            },
            {
                "name": "X-Correlation-ID",
                "in": "header",
                "required": False,
                "description": "Propagated to every log line and queue message of this event",
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:\\-]{1,128}$"},
            },
        ],
        "responses": {
            "202": {
                "description": "The event bus accepted the event",
                "content": {"application/json": {"schema": {"$ref": REF.format(model="Accepted")}}},
            },
            "400": _problem("Malformed JSON or bad header"),
            "401": _problem("Missing or invalid API key"),
            "413": _problem("Body over 64 KiB"),
            "415": _problem("Body is not application/json"),
            "422": _problem("Validation failed; `errors` lists each field"),
            "503": _problem("The event bus did not accept the event; retry after Retry-After"),
        },
    }
    if with_path_id:
        operation["parameters"].append(
            {
                "name": "user_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "format": "uuid"},
            }
        )
    if body_model:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=body_model)}}},
        }
    return operation


def build_openapi() -> dict[str, Any]:
    _, schemas = models_json_schema(
        [
            (UserProfile, "validation"),
            (UserChanges, "validation"),
            (Accepted, "serialization"),
            (Problem, "serialization"),
        ],
        ref_template=REF,
    )
    probe = {"responses": {"200": {"description": "OK"}, "503": {"description": "Not ready"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "datasync API", "version": __version__},
        "paths": {
            "/v1/users": {
                "post": _write_operation("Register a user (UserCreated)", "UserProfile", False)
            },
            "/v1/users/{user_id}": {
                "patch": _write_operation("Change a user (UserUpdated)", "UserChanges", True),
                "delete": _write_operation("Erase a user (UserDeleted)", None, True),
            },
            "/healthz": {"get": {"summary": "Process is alive", **probe}},
            "/readyz": {"get": {"summary": "Event bus is reachable", **probe}},
        },
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }
