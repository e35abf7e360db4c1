"""The status page's browser sessions, kept server-side in one DynamoDB table.

A login gets a random token (256 bits) as its cookie; the table holds only the token's SHA-256,
the fingerprint of the key that logged in and the expiry. So the cookie says nothing about any
key (there is nothing in it to test guesses against offline), a cookie cannot be forged
without the table, and a logout deletes the item: every gunicorn worker of every pod asks the
same table, so the session ends everywhere at once. Removing a key from DATASYNC_API_KEYS
ends its sessions too (their fingerprint is no longer a key's). DynamoDB's TTL removes expired
items; an expired one still in the table is refused.

Why a table: the API keeps no other state, and revoking a session in a process's memory, or
in a signed cookie, cannot reach the other workers and pods. Terraform creates the table
(output ``dashboard_sessions_table``); the API's role needs the ``dashboard_policy_arn`` policy.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from apps.api.auth import ApiKeys

# What secrets.token_urlsafe(32) gives: 43 characters of the URL-safe base64 alphabet.
TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
STORE_TIMEOUT_SECONDS = 1.0


class SessionStoreUnavailable(RuntimeError):
    """The table could not be read or written; the message says what went wrong."""


@dataclass(frozen=True)
class Session:
    fingerprint: str
    expires_at: int


class SessionStore(Protocol):
    def put(self, token_hash: str, session: Session) -> None: ...
    def get(self, token_hash: str) -> Session | None: ...
    def delete(self, token_hash: str) -> None: ...


class DynamoSessionStore:
    """Items ``{"session": <token hash>, "fingerprint", "expires_at"}``; strongly consistent
    reads, so a logout is seen by the very next request, wherever it lands."""

    def __init__(self, table: str, client: Callable[[], Any]):
        self.table = table
        self._client = client  # built on first use: no I/O when the app is created
        self._built: Any = None

    def put(self, token_hash: str, session: Session) -> None:
        item = {
            "session": {"S": token_hash},
            "fingerprint": {"S": session.fingerprint},
            "expires_at": {"N": str(session.expires_at)},
        }
        self._call(
            "PutItem",
            lambda dynamodb: dynamodb.put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression="attribute_not_exists(#s)",
                ExpressionAttributeNames={"#s": "session"},
            ),
        )

    def get(self, token_hash: str) -> Session | None:
        answer = self._call(
            "GetItem",
            lambda dynamodb: dynamodb.get_item(
                TableName=self.table, Key={"session": {"S": token_hash}}, ConsistentRead=True
            ),
        )
        item = answer.get("Item")
        if not item:
            return None
        return Session(item["fingerprint"]["S"], int(item["expires_at"]["N"]))

    def delete(self, token_hash: str) -> None:
        self._call(
            "DeleteItem",
            lambda dynamodb: dynamodb.delete_item(
                TableName=self.table, Key={"session": {"S": token_hash}}
            ),
        )

    def _call(self, operation: str, call: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        if self._built is None:
            self._built = self._client()
        try:
            return call(self._built)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            hint = (
                ": attach the dashboard_policy_arn policy to the API's role"
                if code in ("AccessDeniedException", "UnrecognizedClientException")
                else ""
            )
            raise SessionStoreUnavailable(f"{operation} on {self.table}: {code}{hint}") from None
        except BotoCoreError as exc:
            raise SessionStoreUnavailable(
                f"{operation} on {self.table}: {type(exc).__name__}"
            ) from None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


class Sessions:
    """Logs browsers in and out against ``store``; ``keys`` says which keys are valid now."""

    def __init__(
        self,
        keys: ApiKeys,
        store: SessionStore | None,
        lifetime_seconds: float,
        clock: Callable[[], float] = time.time,
    ):
        self._keys = keys
        self.store = store  # None: DATASYNC_DASHBOARD_SESSIONS_TABLE is not set
        self.lifetime_seconds = int(lifetime_seconds)
        self._clock = clock

    def login(self, presented: str) -> str | None:
        """A new session's cookie value for a valid key, else None (SessionStoreUnavailable if
        it cannot be stored)."""
        fingerprint = self._keys.fingerprint_of(presented.strip().encode("utf-8", "replace"))
        if fingerprint is None:
            return None
        token = secrets.token_urlsafe(32)
        expires_at = int(self._clock()) + self.lifetime_seconds
        self._store().put(token_hash(token), Session(fingerprint, expires_at))
        return token

    def check(self, cookie: str) -> str | None:
        """The key fingerprint of a live session, else None: a malformed cookie is not looked
        up, whatever it holds."""
        if not TOKEN.fullmatch(cookie) or self.store is None:
            return None
        session = self.store.get(token_hash(cookie))
        if session is None or session.expires_at <= self._clock():
            return None
        return session.fingerprint if session.fingerprint in self._keys.fingerprints else None

    def logout(self, cookie: str) -> None:
        """Ends the session server-side (nothing to do for a cookie that cannot be one)."""
        if TOKEN.fullmatch(cookie) and self.store is not None:
            self.store.delete(token_hash(cookie))

    def _store(self) -> SessionStore:
        if self.store is None:
            raise SessionStoreUnavailable(
                "browser sessions need DATASYNC_DASHBOARD_SESSIONS_TABLE (Terraform output "
                "dashboard_sessions_table); scripts can send X-API-Key meanwhile"
            )
        return self.store
