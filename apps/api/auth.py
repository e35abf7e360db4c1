"""API-key authentication: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

Several keys may be valid at once (rotation without downtime: add the new key, move the
clients, remove the old one). Every credential a request presents must be valid: a wrong
``Authorization`` header is not rescued by a right ``X-API-Key``, and two different keys in
one request are refused, so a request always acts as exactly one caller.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from flask import request

from apps.api.errors import ApiError

# What a key may be made of: visible ASCII, no separators (the setting is comma-separated).
KEY_PATTERN = re.compile(r"[!-+\--~]{1,512}")  # 0x21-0x7E without ','


class ApiKeys:
    def __init__(self, keys: list[str]):
        if not keys:
            raise ValueError("at least one API key is required")
        if not all(KEY_PATTERN.fullmatch(k) for k in keys):
            raise ValueError("API keys must be 1-512 visible ASCII characters, without commas")
        self._keys = [k.encode() for k in keys]

    def authenticate(self) -> str:
        """The caller's key fingerprint (safe to log and to scope idempotency keys); 401 if none."""
        presented = _presented_keys()
        if not presented:
            raise _unauthorized("Send an API key as 'Authorization: Bearer <key>' or 'X-API-Key'.")
        if not all([self._is_valid(key) for key in presented]):  # a list: check them all
            raise _unauthorized("The API key is not valid.")
        if len(set(presented)) > 1:
            raise _unauthorized("Send one API key per request: the two headers disagree.")
        return hashlib.sha256(presented[0]).hexdigest()[:16]

    def _is_valid(self, presented: bytes) -> bool:
        # Compare against every key, always: the time taken says nothing about which matched.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(presented, key)
        return matched


def _presented_keys() -> list[bytes]:
    """Every credential in the request, as bytes (b"" for one that is malformed)."""
    presented = []
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        presented.append(_raw(token.strip()) if scheme.lower() == "bearer" else b"")
    api_key = request.headers.get("X-API-Key")
    if api_key is not None:
        presented.append(_raw(api_key.strip()))
    return presented


def _raw(value: str) -> bytes:
    # WSGI hands header values over as latin-1 text: these are the bytes the client sent.
    return value.encode("latin-1", errors="replace")


def _unauthorized(detail: str) -> ApiError:
    return ApiError(
        401, "Unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="datasync"'}
    )
