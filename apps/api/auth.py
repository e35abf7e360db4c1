"""API-key authentication: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

Several keys may be valid at once (rotation without downtime: add the new key, move the
clients, remove the old one). Every credential a request presents must be valid: a wrong
``Authorization`` header is not rescued by a right ``X-API-Key``, and two different keys in
one request are refused, so a request always acts as exactly one caller.

A client address (an IPv6 client's /64) whose keys were refused too often gets 429 until it may
try again (``FailedAuthentications``): guessing keys online is slowed to a crawl, and nothing
about the key it sent is looked at meanwhile.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re

from flask import request

from apps.api.errors import ApiError, retry_after_header
from apps.api.ratelimit import FailedAuthentications
from datasync.settings import ConfigError

# What a key may be made of: visible ASCII, no separators (the setting is comma-separated).
KEY_PATTERN = re.compile(r"[!-+\--~]{1,512}")  # 0x21-0x7E without ','


class ApiKeys:
    def __init__(self, keys: list[str], failures: FailedAuthentications | None = None):
        """``keys`` as Settings.api_key_list() gives them; ConfigError if one cannot be sent in
        a header."""
        if not keys:
            raise ConfigError("DATASYNC_API_KEYS: at least one API key is required")
        if not all(KEY_PATTERN.fullmatch(k) for k in keys):
            raise ConfigError(
                "DATASYNC_API_KEYS: keys are 1-512 visible ASCII characters, no commas"
            )
        self._keys = [k.encode() for k in keys]
        self.fingerprints = frozenset(key_fingerprint(k) for k in self._keys)
        self._failures = failures or FailedAuthentications(per_minute=0)

    def authenticate(self) -> str:
        """The caller's key fingerprint (safe to log and to scope idempotency keys); 401 if none,
        429 if this client's keys were refused too often."""
        self.refuse_if_throttled()
        presented = _presented_keys()
        if not presented:
            raise _unauthorized("Send an API key as 'Authorization: Bearer <key>' or 'X-API-Key'.")
        if not all([self._is_valid(key) for key in presented]):  # a list: check them all
            self.record_failure()
            raise _unauthorized("The API key is not valid.")
        if len(set(presented)) > 1:
            raise _unauthorized("Send one API key per request: the two headers disagree.")
        return key_fingerprint(presented[0])

    def fingerprint_of(self, presented: bytes) -> str | None:
        """The fingerprint of ``presented`` if it is a valid key (the status page's login)."""
        return key_fingerprint(presented) if self._is_valid(presented) else None

    def refuse_if_throttled(self) -> None:
        """429 before any key is looked at, while this client address may not try one."""
        wait = self._failures.retry_after(_client_address())
        if wait > 0:
            raise ApiError(
                429,
                "Too Many Requests",
                "Too many API keys from this address were refused; retry after Retry-After "
                "seconds with a valid key.",
                headers={"Retry-After": retry_after_header(wait)},
            )

    def record_failure(self) -> None:
        """A key this client sent was refused (the API's headers or the status page's form)."""
        self._failures.record_failure(_client_address())

    def _is_valid(self, presented: bytes) -> bool:
        # Compare against every key, always: the time taken says nothing about which matched.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(presented, key)
        return matched


def key_fingerprint(key: bytes) -> str:
    """16 hex characters that name a key in logs and idempotency scopes, never the key."""
    return hashlib.sha256(key).hexdigest()[:16]


def _client_address() -> str:
    # The peer, or with DATASYNC_API_TRUSTED_PROXIES the client its proxies name (ProxyFix).
    return client_network(request.remote_addr or "unknown")


def client_network(address: str) -> str:
    """What refused keys are counted against: an IPv4 address, or an IPv6 client's /64.

    An IPv6 subscriber gets a /64 (or more) and picks the low 64 bits at will, so counting per
    address would let it rotate past the limit; an IPv4-mapped address is its IPv4 address.
    Anything else (a proxy that forwards garbage) is counted as it is.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


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
