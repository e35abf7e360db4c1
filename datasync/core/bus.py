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

Concurrent publishes share PutEvents calls (micro-batching, ``_Batcher``): a publish whose
entry finds a free call slot sends at once, with whatever other entries are waiting (up to
10, 256 KB); while ``max_in_flight`` calls are out, entries queue and go together in the
next one. So batches grow exactly when calls are slow or requests many, and a lone request
pays nothing for it. Each publish still has its own budget, breaker accounting and outcome:
the entry's own ``ErrorCode`` decides, and a publish stops waiting at its deadline even when
the call carrying its entry hangs.

The interface (``publish(event) -> entry id`` raising ``PublishError``, ``is_reachable()``,
``circuit``) is what the API depends on. What happens is reported to a ``PublishObserver``
(the API's counts it in Prometheus metrics; core code knows no metrics library).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
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
# One PutEvents call: at most 10 entries, 256 KB in all (one entry may be that large).
MAX_BATCH_ENTRIES = 10
MAX_BATCH_BYTES = 256 * 1024
ARRIVAL_SMOOTHING = 0.2  # weight of the newest gap between entries in their moving average
CIRCUIT_OPEN = "CircuitOpen"
logger = logging.getLogger("datasync.bus")

CircuitState = Literal["closed", "open", "half_open"]
# What became of one event handed to the publisher (docs/observability.md, publish outcomes).
PublishOutcome = Literal["accepted", "refused", "unavailable", "circuit_open"]


class PublishObserver:
    """Told what the publisher does; does nothing. Called on request threads: keep it cheap."""

    def put_events_call(self, entries: int, seconds: float) -> None:
        """One PutEvents call carrying ``entries`` entries took ``seconds`` (error or not)."""

    def published(self, outcome: PublishOutcome) -> None:
        """One event's publish ended so."""

    def circuit_changed(self, is_open: bool) -> None:
        """The breaker opened (True), or closed again after a success (False)."""


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
    observer: PublishObserver = field(default_factory=PublishObserver, repr=False)
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
            self.observer.circuit_changed(False)
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
            self.observer.circuit_changed(True)
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


def entry_size(entry: dict[str, Any]) -> int:
    """An entry's size as EventBridge counts it: 14 bytes of Time plus the UTF-8 text fields."""
    return 14 + sum(len(entry[name].encode()) for name in ("Source", "DetailType", "Detail"))


@dataclass(eq=False)
class _Pending:
    """One publish's entry, waiting for (or riding in) a PutEvents call."""

    entry: dict[str, Any]
    size: int
    deadline: float
    outcome: _Outcome | None = None
    error: Exception | None = None
    sending: bool = False

    @property
    def settled(self) -> bool:
        return self.outcome is not None or self.error is not None


class _Batcher:
    """Shares PutEvents calls between the publishes of one process; the caller's thread sends.

    A publish whose entry finds fewer than ``max_in_flight`` calls out becomes the sender: it
    takes the oldest waiting entries (its own among them unless ten are ahead of it) into one
    call. Others wait for their entry's outcome, or for a free slot to send themselves. A
    sender lingers up to ``linger_seconds`` for the batch to fill, but only while entries
    arrive faster than that (a lone request is sent at once). Nobody waits past its own
    deadline: an entry that was never sent is taken back (definitely not published); one
    whose call hangs is given up on like a read timeout. An entry is only put in a call while
    a whole attempt (``attempt_timeout``) still fits before its deadline.
    """

    def __init__(
        self,
        events_client: Any,
        *,
        attempt_timeout: float,
        max_in_flight: int,
        linger_seconds: float,
        clock: Callable[[], float],
        observer: PublishObserver,
    ):
        self.events_client = events_client
        self.observer = observer
        self.attempt_timeout = attempt_timeout
        self.max_in_flight = max_in_flight
        self.linger_seconds = linger_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)  # an outcome is in, or a slot is free
        self._grown = threading.Condition(self._lock)  # a lingering sender: more entries wait
        self._waiting: deque[_Pending] = deque()
        self._in_flight = 0
        self._lingering = False
        # Mean time between entries (moving average): lingering only pays when another entry
        # is likely to arrive within the linger.
        self._gap = 1.0
        self._last_arrival = clock()

    def attempt(self, entries: list[tuple[dict[str, Any], int]], deadline: float) -> list[_Outcome]:
        """One attempt at putting each (entry, size) on the bus, in calls shared with others.

        An outcome per entry, in order; an unexpected error of a call carrying one of them is
        raised (after every entry is settled).
        """
        mine = [_Pending(entry, size, deadline) for entry, size in entries]
        with self._lock:
            now = self.clock()
            for gap in [now - self._last_arrival] + [0.0] * (len(mine) - 1):
                self._gap += (gap - self._gap) * ARRIVAL_SMOOTHING
            self._last_arrival = now
            self._waiting.extend(mine)
            if self._lingering:
                self._grown.notify()
        while True:
            with self._lock:
                batch = self._outcomes_or_turn(mine, deadline)
            if batch is None:
                break
            self._send(batch)
        error = next((pending.error for pending in mine if pending.error is not None), None)
        if error is not None:
            raise error
        return [pending.outcome for pending in mine]  # type: ignore[misc]

    def _outcomes_or_turn(self, mine: list[_Pending], deadline: float) -> list[_Pending] | None:
        """Under the lock: None once all of ``mine`` are settled, else a batch to send now."""
        while unsettled := [pending for pending in mine if not pending.settled]:
            queued = any(not pending.sending for pending in unsettled)
            if queued and not self._lingering and self._in_flight < self.max_in_flight:
                return self._take_batch()
            left = deadline - self.clock()
            if left <= 0:
                for pending in unsettled:
                    self._give_up(pending)
                return None
            self._settled.wait(left)
        return None

    def _take_batch(self) -> list[_Pending]:
        self._in_flight += 1
        if len(self._waiting) < MAX_BATCH_ENTRIES and self._gap < self.linger_seconds:
            self._lingering = True
            until = self.clock() + self.linger_seconds
            while len(self._waiting) < MAX_BATCH_ENTRIES and (left := until - self.clock()) > 0:
                self._grown.wait(left)
            self._lingering = False
        batch: list[_Pending] = []
        size, now = 0, self.clock()
        while self._waiting and len(batch) < MAX_BATCH_ENTRIES:
            if size + self._waiting[0].size > MAX_BATCH_BYTES:
                break
            pending = self._waiting.popleft()
            if pending.deadline - now < self.attempt_timeout:
                # A call started now might end after this publish has answered.
                pending.outcome = _Outcome(code="RequestTimeout", message="budget spent waiting")
                continue
            pending.sending = True
            batch.append(pending)
            size += pending.size
        # Entries left behind may be sent by someone else now; expired ones have an outcome.
        self._settled.notify_all()
        return batch

    def _give_up(self, pending: _Pending) -> None:
        if pending.sending:  # its call hangs beyond the client's timeouts: maybe published
            pending.outcome = _Outcome(code="RequestTimeout", message="no answer in time")
        else:  # never sent: definitely not published
            self._waiting.remove(pending)
            pending.outcome = _Outcome(code="RequestTimeout", message="not sent in time")

    def _send(self, batch: list[_Pending]) -> None:
        outcomes: list[_Outcome] = []
        error: Exception | None = None
        try:
            if batch:
                outcomes = self._put([pending.entry for pending in batch])
        except Exception as exc:  # noqa: BLE001 - unexpected: every publish of this call hears of it
            error = exc
        finally:
            with self._lock:
                self._in_flight -= 1
                for index, pending in enumerate(batch):
                    pending.sending = False
                    if error is not None:
                        pending.error = error
                    elif index < len(outcomes):
                        pending.outcome = outcomes[index]
                    else:
                        pending.outcome = _Outcome(code="InternalFailure", message="no result")
                self._settled.notify_all()

    def _put(self, entries: list[dict[str, Any]]) -> list[_Outcome]:
        """One PutEvents call; an outcome per entry, in order (a whole-call error for each)."""
        started = time.perf_counter()
        try:
            response = self.events_client.put_events(Entries=entries)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            code = error.get("Code") or "InternalFailure"
            if status >= 500 and code not in RETRYABLE_ERRORS:
                code = "InternalFailure"
            return [_Outcome(code=code, message=error.get("Message", ""))] * len(entries)
        except BotoCoreError as exc:  # connection refused, timeout: the bus is not answering
            return [_Outcome(code="InternalFailure", message=type(exc).__name__)] * len(entries)
        finally:
            self.observer.put_events_call(len(entries), time.perf_counter() - started)
        results = response.get("Entries") or []
        return [_entry_outcome(results[i] if i < len(results) else {}) for i in range(len(entries))]


def _outcome_of(result: str | PublishError) -> PublishOutcome:
    if not isinstance(result, PublishError):
        return "accepted"
    if result.code == CIRCUIT_OPEN:
        return "circuit_open"
    return "unavailable" if result.retryable else "refused"


def _entry_outcome(result: dict[str, Any]) -> _Outcome:
    # Results come in the order of the entries sent; a failed one has ErrorCode, not EventId.
    if result.get("EventId") and not result.get("ErrorCode"):
        return _Outcome(event_id=result["EventId"])
    return _Outcome(
        code=result.get("ErrorCode") or "InternalFailure", message=result.get("ErrorMessage", "")
    )


@dataclass
class EventPublisher:
    """Puts events on one bus. ``attempt_timeout``: the client's connect + read timeout.

    ``max_in_flight`` PutEvents calls at most at once per publisher (one per process), each
    carrying up to 10 entries of concurrent publishes; ``linger_seconds``: how long a sender
    waits for a batch to fill (0: send at once with whatever is waiting).
    """

    events_client: Any
    bus_name: str
    budget_seconds: float = 2.0
    attempt_timeout: float = 0.9
    base_delay: float = 0.05
    max_delay: float = 0.5
    max_in_flight: int = 2
    linger_seconds: float = 0.0
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    observer: PublishObserver = field(default_factory=PublishObserver)
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
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1: no call could ever be sent")
        self._batcher = _Batcher(
            self.events_client,
            attempt_timeout=self.attempt_timeout,
            max_in_flight=self.max_in_flight,
            linger_seconds=self.linger_seconds,
            clock=self.clock,
            observer=self.observer,
        )

    @property
    def circuit(self) -> CircuitState:
        return self.breaker.state

    def publish(self, event: AnyEvent) -> str:
        """Put one event on the bus; returns the EventBridge entry id."""
        [result] = self.publish_many([event])
        if isinstance(result, PublishError):
            raise result
        return result

    def publish_many(self, events: list[AnyEvent]) -> list[str | PublishError]:
        """Put each event on the bus on its own: its entry id, or the PublishError saying why not.

        One budget for all of them; each entry is retried, counted by the breaker and refused
        alone, exactly as if it had been published by a request of its own.
        """
        try:
            results = self._publish_many(events)
        except Exception:  # unexpected: none of them is known to be on the bus
            for _ in events:
                self.observer.published("unavailable")
            raise
        for result in results:
            self.observer.published(_outcome_of(result))
        return results

    def _publish_many(self, events: list[AnyEvent]) -> list[str | PublishError]:
        results: list[str | PublishError | None] = [None] * len(events)
        entries: dict[int, tuple[dict[str, Any], int]] = {}
        for index, event in enumerate(events):
            entry = self._entry(event)
            size = entry_size(entry)
            try:
                if size > MAX_BATCH_BYTES:
                    raise PublishError("event is larger than EventBridge accepts", retryable=False)
                self.breaker.admit()
            except PublishError as exc:
                results[index] = exc
                continue
            entries[index] = (entry, size)
        deadline = self.clock() + self.budget_seconds
        unreported = set(entries)
        try:
            attempt = 0
            while entries:
                attempt += 1
                outcomes = self._batcher.attempt(list(entries.values()), deadline)
                retry = {}
                for index, outcome in zip(list(entries), outcomes, strict=True):
                    if outcome.event_id is None and outcome.retryable:
                        retry[index] = outcome
                        continue
                    self.breaker.record_success()  # the bus answered: it is up
                    unreported.discard(index)
                    results[index] = outcome.event_id or PublishError(
                        f"bus refused the event: {outcome.code}", retryable=False, code=outcome.code
                    )
                if not retry:
                    break
                delay = backoff_delay(
                    attempt, base=self.base_delay, cap=self.max_delay, rng=self.rng
                )
                # Another attempt only if its worst case still fits, and not once other
                # requests have found the bus down (the breaker opened meanwhile).
                fits = self.clock() + delay + self.attempt_timeout <= deadline
                if not fits or self.breaker.state == "open":
                    for index, outcome in retry.items():
                        self.breaker.record_failure()
                        unreported.discard(index)
                        results[index] = PublishError(
                            f"bus unavailable after {attempt} attempts: {outcome.code}",
                            code=outcome.code,
                            retry_after=max(1.0, self.breaker.retry_after()),
                        )
                    break
                self.sleep(delay)
                entries = {index: entries[index] for index in retry}
        finally:
            for _ in unreported:  # an unexpected error: count it, so a probe never stays open
                self.breaker.record_failure()
        return results  # type: ignore[return-value]

    def _entry(self, event: AnyEvent) -> dict[str, Any]:
        return {
            "Source": EVENT_SOURCE,
            "DetailType": event.event_type,
            "Detail": event_to_json(event),
            "EventBusName": self.bus_name,
            "Time": event.occurred_at,
        }

    def is_reachable(self) -> bool:
        """One bounded call (the client's timeouts, no retries): does the bus answer?"""
        try:
            self.events_client.describe_event_bus(Name=self.bus_name)
        except (ClientError, BotoCoreError):
            return False
        return True
