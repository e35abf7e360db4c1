"""Publishing business events to EventBridge, within a time budget and behind a circuit breaker.

PutEvents can answer HTTP 200 and still have refused an entry (``FailedEntryCount``, a
per-entry ``ErrorCode``). The publisher looks at every entry, retries what is worth retrying
with jittered backoff, and raises ``PublishError`` when the bus did not take the event. The
caller (the API) answers 202 only when ``publish`` returned.

The budget bounds the *whole* publish: the client it is given must not retry on its own
(``datasync.core.aws.client(attempts=1)``), and an attempt is only started while its worst
case (connect + read timeout of that client, ``attempt_timeout``) still fits in what is left.
While the bus is down the breaker fails calls at once instead of letting every request wait
for its timeouts; after a cool-down one call probes the bus again.

The interface (``publish(event) -> entry id`` raising ``PublishError``, ``is_reachable()``,
``circuit``) is what the API depends on, so a publisher that batches concurrent calls into
one PutEvents can replace this one without touching the API.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from datasync.contract import EVENT_SOURCE, AnyEvent, event_to_json
from datasync.core.retry import backoff_delay

# Codes that mean "the bus is unavailable or overloaded right now", as a per-entry ErrorCode
# or as the error of the whole call. Anything else is a definitive answer from the bus.
RETRYABLE_ERRORS = frozenset(
    {
        "ThrottlingException",
        "InternalFailure",
        "InternalException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
MAX_ENTRY_BYTES = 256 * 1024
CIRCUIT_OPEN = "CircuitOpen"
logger = logging.getLogger("datasync.bus")

CircuitState = Literal["closed", "open", "half_open"]


class PublishError(RuntimeError):
    """The bus did not accept the event.

    ``retryable``: a later retry may succeed. ``retry_after``: seconds the caller should wait
    before retrying (the breaker's remaining cool-down when it is open).
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        code: str | None = None,
        retry_after: float = 1.0,
    ):
        super().__init__(message)
        self.retryable = retryable
        self.code = code
        self.retry_after = retry_after


@dataclass
class CircuitBreaker:
    """Consecutive failures open it for ``cooldown_seconds``; then one probe call is let through.

    A success (any definitive answer from the bus) closes it; a failed probe opens it again.
    Thread-safe: one breaker is shared by every request thread of a worker process.
    """

    failure_threshold: int = 5
    cooldown_seconds: float = 5.0
    clock: Callable[[], float] = time.monotonic
    _failures: int = 0
    _opened_at: float | None = None
    _probe_started_at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def state(self) -> CircuitState:
        with self._lock:
            return self._state(self.clock())

    def _state(self, now: float) -> CircuitState:
        if self._opened_at is None:
            return "closed"
        if now - self._opened_at < self.cooldown_seconds:
            return "open"
        return "half_open"

    def admit(self) -> None:
        """Let a call through, or raise PublishError(code=CircuitOpen) at once."""
        with self._lock:
            now = self.clock()
            state = self._state(now)
            if state == "closed":
                return
            if state == "open":
                remaining = self.cooldown_seconds - (now - self._opened_at)  # type: ignore[operator]
                raise _circuit_open(remaining)
            # Half open: one probe at a time. A probe that never reported (its thread died)
            # must not keep the circuit shut forever, so it expires after a cool-down.
            probing = self._probe_started_at is not None
            if probing and now - self._probe_started_at < self.cooldown_seconds:  # type: ignore[operator]
                raise _circuit_open(1.0)
            self._probe_started_at = now

    def record_success(self) -> None:
        with self._lock:
            was_open = self._opened_at is not None
            self._failures = 0
            self._opened_at = None
            self._probe_started_at = None
        if was_open:
            logger.info("circuit breaker closed: the event bus answers again")

    def record_failure(self) -> None:
        with self._lock:
            # The count is not reset when the circuit opens, so a failed probe reopens it.
            self._failures += 1
            opens = self._failures >= self.failure_threshold
            newly = opens and (self._opened_at is None or self._probe_started_at is not None)
            if opens:
                self._opened_at = self.clock()
                self._probe_started_at = None
        if newly:
            logger.warning(
                "circuit breaker open: failing publishes at once for the cool-down",
                extra={"failures": self._failures, "cooldown_seconds": self.cooldown_seconds},
            )

    def retry_after(self) -> float:
        """Seconds until the circuit lets a call through again (0 when it does now)."""
        with self._lock:
            now = self.clock()
            if self._state(now) != "open":
                return 0.0
            return self.cooldown_seconds - (now - self._opened_at)  # type: ignore[operator]


def _circuit_open(retry_after: float) -> PublishError:
    return PublishError(
        "the event bus failed repeatedly; not trying again until the cool-down is over",
        code=CIRCUIT_OPEN,
        retry_after=max(retry_after, 0.0),
    )


@dataclass
class _Outcome:
    event_id: str | None = None
    code: str | None = None
    message: str = ""

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_ERRORS


@dataclass
class EventPublisher:
    """Puts events on one bus. ``attempt_timeout``: the client's connect + read timeout."""

    events_client: Any
    bus_name: str
    budget_seconds: float = 2.0
    attempt_timeout: float = 0.9
    base_delay: float = 0.05
    max_delay: float = 0.5
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    rng: Callable[[], float] = random.random

    def __post_init__(self) -> None:
        if self.attempt_timeout > self.budget_seconds:
            raise ValueError(
                f"one attempt may take {self.attempt_timeout}s (connect + read timeout), more "
                f"than the whole publishing budget of {self.budget_seconds}s: lower the "
                "timeouts or raise the budget"
            )

    @property
    def circuit(self) -> CircuitState:
        return self.breaker.state

    def publish(self, event: AnyEvent) -> str:
        """Put one event on the bus; returns the EventBridge entry id."""
        entry = self._entry(event)
        self.breaker.admit()
        deadline = self.clock() + self.budget_seconds
        reported = False
        try:
            attempt = 0
            while True:
                attempt += 1
                outcome = self._put(entry)
                if outcome.event_id is not None or not outcome.retryable:
                    self.breaker.record_success()  # the bus answered: it is up
                    reported = True
                    if outcome.event_id is not None:
                        return outcome.event_id
                    raise PublishError(
                        f"bus refused the event: {outcome.code}", retryable=False, code=outcome.code
                    )
                delay = backoff_delay(
                    attempt, base=self.base_delay, cap=self.max_delay, rng=self.rng
                )
                # Another attempt only if its worst case still fits, and not once other
                # requests have found the bus down (the breaker opened meanwhile).
                fits = self.clock() + delay + self.attempt_timeout <= deadline
                if not fits or self.breaker.state == "open":
                    self.breaker.record_failure()
                    reported = True
                    raise PublishError(
                        f"bus unavailable after {attempt} attempts: {outcome.code}",
                        code=outcome.code,
                        retry_after=max(1.0, self.breaker.retry_after()),
                    )
                self.sleep(delay)
        finally:
            if not reported:  # an unexpected error: count it, so a probe never stays open
                self.breaker.record_failure()

    def _entry(self, event: AnyEvent) -> dict[str, Any]:
        entry = {
            "Source": EVENT_SOURCE,
            "DetailType": event.event_type,
            "Detail": event_to_json(event),
            "EventBusName": self.bus_name,
            "Time": event.occurred_at,
        }
        if len(entry["Detail"].encode()) > MAX_ENTRY_BYTES:
            raise PublishError("event is larger than EventBridge accepts", retryable=False)
        return entry

    def _put(self, entry: dict[str, Any]) -> _Outcome:
        try:
            response = self.events_client.put_events(Entries=[entry])
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            code = error.get("Code") or "InternalFailure"
            if status >= 500 and code not in RETRYABLE_ERRORS:
                code = "InternalFailure"
            return _Outcome(code=code, message=error.get("Message", ""))
        except BotoCoreError as exc:  # connection refused, timeout: the bus is not answering
            return _Outcome(code="InternalFailure", message=type(exc).__name__)
        result = (response.get("Entries") or [{}])[0]
        if response.get("FailedEntryCount", 0) == 0 and "EventId" in result:
            return _Outcome(event_id=result["EventId"])
        return _Outcome(
            code=result.get("ErrorCode") or "InternalFailure",
            message=result.get("ErrorMessage", ""),
        )

    def is_reachable(self) -> bool:
        """One bounded call (the client's timeouts, no retries): does the bus answer?"""
        try:
            self.events_client.describe_event_bus(Name=self.bus_name)
        except (ClientError, BotoCoreError):
            return False
        return True
