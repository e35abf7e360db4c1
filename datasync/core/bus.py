"""Publishing business events to EventBridge, with the checks a 200 response does not make.

PutEvents can answer HTTP 200 and still have refused an entry (``FailedEntryCount``, a
per-entry ``ErrorCode``). The publisher looks at every entry, retries the retryable codes
with jittered backoff inside a time budget, and raises ``PublishError`` when the bus did not
take the event. The caller (the API) answers 202 only when ``publish`` returned.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from datasync.contract import EVENT_SOURCE, AnyEvent, event_to_json

RETRYABLE_ENTRY_ERRORS = frozenset({"ThrottlingException", "InternalFailure", "InternalException"})
MAX_ENTRY_BYTES = 256 * 1024


class PublishError(RuntimeError):
    """The bus did not accept the event. ``retryable`` tells the client whether to retry."""

    def __init__(self, message: str, *, retryable: bool = True, code: str | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.code = code


@dataclass
class EventPublisher:
    events_client: Any
    bus_name: str
    budget_seconds: float = 2.0
    base_delay: float = 0.05
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def publish(self, event: AnyEvent) -> str:
        """Put one event on the bus; returns the EventBridge entry id."""
        entry = {
            "Source": EVENT_SOURCE,
            "DetailType": event.event_type,
            "Detail": event_to_json(event),
            "EventBusName": self.bus_name,
            "Time": event.occurred_at,
        }
        if len(entry["Detail"].encode()) > MAX_ENTRY_BYTES:
            raise PublishError("event is larger than EventBridge accepts", retryable=False)
        deadline = self.clock() + self.budget_seconds
        attempt = 0
        while True:
            attempt += 1
            code, message = self._put(entry)
            if code is None:
                return message
            if code not in RETRYABLE_ENTRY_ERRORS:
                raise PublishError(f"bus refused the event: {code}", retryable=False, code=code)
            delay = min(1.0, self.base_delay * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)  # noqa: S311
            if self.clock() + delay > deadline:
                raise PublishError(f"bus unavailable after {attempt} attempts: {code}", code=code)
            self.sleep(delay)

    def _put(self, entry: dict[str, Any]) -> tuple[str | None, str]:
        """(None, entry id) on success, else (error code, message)."""
        try:
            response = self.events_client.put_events(Entries=[entry])
        except ClientError as exc:
            error = exc.response.get("Error", {})
            return error.get("Code") or "InternalFailure", error.get("Message", "")
        except BotoCoreError as exc:  # connection refused, timeout: worth retrying
            return "InternalFailure", str(exc)
        result = response["Entries"][0]
        if response.get("FailedEntryCount", 0) == 0 and "EventId" in result:
            return None, result["EventId"]
        return result.get("ErrorCode") or "InternalFailure", result.get("ErrorMessage", "")

    def is_reachable(self) -> bool:
        try:
            self.events_client.describe_event_bus(Name=self.bus_name)
        except (ClientError, BotoCoreError):
            return False
        return True
