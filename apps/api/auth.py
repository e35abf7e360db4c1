"""API-key authentication: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""

from __future__ import annotations

import hashlib
import hmac

from flask import request

from apps.api.errors import ApiError


class ApiKeys:
    def __init__(self, keys: list[str]):
        if not keys:
            raise ValueError("at least one API key is required")
        self._keys = [k.encode() for k in keys]

    def authenticate(self) -> str:
        """The caller's key fingerprint (safe to log and to scope idempotency keys); 401 if none."""
        presented = _presented_key()
        if presented is None:
            raise _unauthorized("Send an API key as 'Authorization: Bearer <key>' or 'X-API-Key'.")
        # Compare against every key, always: the time taken says nothing about which matched.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(presented.encode(), key)
        if not matched:
            raise _unauthorized("The API key is not valid.")
        return hashlib.sha256(presented.encode()).hexdigest()[:16]


def _presented_key() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("X-API-Key", "").strip() or None


def _unauthorized(detail: str) -> ApiError:
    return ApiError(
        401, "Unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="datasync"'}
    )
