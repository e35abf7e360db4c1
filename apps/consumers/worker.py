"""The consumer loop: receive a batch, apply it, delete only what was applied.

A message carries a record pack (the records of one Lambda batch) or a single record; every
record of the batch is applied in one transaction, each in its own savepoint. Delivery is
at-least-once, so the store is idempotent (event ids) and order-safe (per-field versions); the
worker's job is to never lose a record, and to retry or dead-letter each one on its own:
- a message is deleted only after its records are committed to the store, or dead-lettered,
  or (the failed records of a pack) re-sent as a new message, delayed by the backoff and
  carrying their attempt count (``delivery_attempt``: a new message's receive count is 1);
- a message whose records all failed becomes visible again after an exponential backoff;
- on a record's last allowed attempt (the queue's ``maxReceiveCount``) it is copied to the
  DLQ on its own with the reason, so the DLQ says why and a redrive sends back only that record;
- a message that can never be applied goes to the DLQ at once, with the reason: poison is any
  body that is not a valid record or pack (whatever its text: nested 100,000 deep, 256 KiB of
  garbage, wrong types, a version its producer would not write), another destination's, or a
  ``delivery_attempt`` attribute that is not an attempt; the rest of the batch is applied;
- a store that cannot be reached (``StoreUnavailable``: down, restarting, failing over,
  read-only, locked, unwritable) is no record's failure: the worker keeps the batch in hand
  invisible (a visibility heartbeat) and retries it as it is, with a capped backoff, and no
  worker of the process receives anything until the store answers again (each receive counts
  toward the queue's maxReceiveCount); readiness says why meanwhile. A store that fails the
  whole batch for another reason counts as every record's failure, and records on their last
  attempt are dead-lettered with that reason (the redrive policy would move them silently);
- a crash at any point loses nothing: what was not deleted comes back, and the stores ignore
  what they already applied;
- an unexpected error while handling a batch does not end the worker: it is logged (type and
  place, no personal data), the loop backs off and goes on, and the batch's messages come back
  after their visibility timeout;
- on SIGTERM the worker finishes the batch in hand and exits.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from apps.consumers.metrics import ConsumerMetrics
from datasync.contract import DestinationRecord, RecordPack, parse_queue_message
from datasync.contract.events import now_utc, version_time
from datasync.core.logging import log_context
from datasync.core.queues import (
    ATTEMPT_ATTRIBUTE,
    BadAttempt,
    attempt_attribute,
    dead_letter,
    delivery_attempt,
    error_code,
    failure_reason,
    receive_count,
    retry_delay,
    string_attributes,
    string_values,
    unexpected_error,
    validation_problems,
)
from datasync.core.retry import backoff_delay
from datasync.core.stores import RecordResult, SqlStore, StoreUnavailable

logger = logging.getLogger("datasync.consumer")

# The SQS maximum, and the default of DATASYNC_RECEIVE_WAIT_SECONDS.
LONG_POLL_SECONDS = 20
BATCH_SIZE = 10
# Waiting out an unreachable queue: about 1, 2, 4 ... s, at most 20 s between attempts.
RECEIVE_RETRY_BASE_SECONDS = 1
RECEIVE_RETRY_CAP_SECONDS = 20
HOUSEKEEPING_SECONDS = 60
# Waiting out an unreachable store: a retry after about 0.5, 1, 2, 4 s, then every 2.5-5 s, so
# that what waited is applied within seconds of the database's return.
STORE_RETRY_BASE_SECONDS = 0.5
STORE_RETRY_CAP_SECONDS = 5
# Meanwhile the batch in hand is hidden for HOLD_SECONDS more every HEARTBEAT_SECONDS: no other
# consumer receives it again. The margin covers one store attempt that hangs (connect and lock
# timeouts 5 s, a vanished peer about 30 s).
HOLD_SECONDS = 60
HEARTBEAT_SECONDS = 15
STILL_DOWN_LOG_SECONDS = 30  # a store still unreachable is logged again this often
# Message attributes that trace a message to its events (a record's or a pack's).
TRACE_ATTRIBUTES = ("event_id", "correlation_id", "event_ids", "correlation_ids")


@dataclass(frozen=True)
class RedriveTarget:
    """Where the queue's redrive policy sends messages, and after how many receives."""

    dlq_url: str | None
    max_receive_count: int | None

    @classmethod
    def of_queue(cls, sqs: Any, queue_url: str) -> RedriveTarget:
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])
        policy = attributes.get("Attributes", {}).get("RedrivePolicy")
        if not policy:
            logger.warning("queue has no redrive policy: failing messages retry forever")
            return cls(None, None)
        policy = json.loads(policy)
        arn = policy["deadLetterTargetArn"].split(":")
        dlq_url = sqs.get_queue_url(QueueName=arn[5], QueueOwnerAWSAccountId=arn[4])["QueueUrl"]
        return cls(dlq_url, int(policy["maxReceiveCount"]))


@dataclass
class ConsumerWorker:
    sqs: Any
    queue_url: str
    store: SqlStore
    redrive: RedriveTarget
    metrics: ConsumerMetrics
    wait_seconds: int = LONG_POLL_SECONDS
    backoff: Callable[[int], int] = retry_delay
    # After a batch of fewer than BATCH_SIZE messages, wait this long before the next receive:
    # messages gather in the queue meanwhile, so the next call takes several at once instead of
    # one per call (each call costs both ends about a millisecond of CPU). A full batch means a
    # backlog: the next receive follows at once, so the window never limits throughput.
    batch_window_seconds: float = 0.0
    # Set by run(); poll_once() alone never stops waiting for an unreachable store.
    stop: threading.Event = field(default_factory=threading.Event)
    _next_housekeeping: float = 0.0
    _store_failures: int = 0  # in a row, for the backoff
    _down_logged_at: float = 0.0

    def run(self, stop: threading.Event) -> None:
        self.stop = stop
        failures = 0
        while not stop.is_set():
            if self.metrics.store_problem is not None and not self._store_answers():
                continue
            try:
                received = self.poll_once()
            except (BotoCoreError, ClientError) as exc:
                # The queue endpoint is unreachable or refusing: back off, keep the loop alive.
                failures += 1
                wait = backoff_delay(
                    failures, base=RECEIVE_RETRY_BASE_SECONDS, cap=RECEIVE_RETRY_CAP_SECONDS
                )
                logger.warning(
                    "receive failed, backing off",
                    extra={"error": error_code(exc), "wait_seconds": round(wait, 2)},
                )
                stop.wait(wait)
            except Exception as exc:  # noqa: BLE001 - a bug must not end the worker thread
                # What was received and not deleted comes back after its visibility timeout.
                failures += 1
                wait = backoff_delay(
                    failures, base=RECEIVE_RETRY_BASE_SECONDS, cap=RECEIVE_RETRY_CAP_SECONDS
                )
                logger.error(
                    "batch failed unexpectedly, backing off",
                    extra={"error": unexpected_error(exc), "wait_seconds": round(wait, 2)},
                )
                stop.wait(wait)
            else:
                failures = 0
                if 0 < received < BATCH_SIZE and self.batch_window_seconds > 0:
                    stop.wait(self.batch_window_seconds)
            self._housekeeping()

    def _housekeeping(self) -> None:
        """Now and then, between batches: forget for good the marketing details nobody may see
        once their retention is over (datasync/contract/consent.py says why they wait)."""
        now = time.monotonic()
        if now < self._next_housekeeping or self.metrics.store_problem is not None:
            return
        self._next_housekeeping = now + HOUSEKEEPING_SECONDS
        try:
            forgotten = self.store.forget_expired_hidden()
        except StoreUnavailable:
            return  # the next batch finds it out and waits; the next round retries
        except Exception:  # noqa: BLE001 - the next round retries
            logger.warning("housekeeping failed; will try again", exc_info=True)
            return
        if forgotten:
            logger.info("forgot hidden contact details", extra={"keys": forgotten})

    def poll_once(self) -> int:
        """Receive and handle one batch; returns how many messages were received."""
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=BATCH_SIZE,
            WaitTimeSeconds=self.wait_seconds,
            AttributeNames=["ApproximateReceiveCount"],
            # Only what is used (each attribute costs both ends a parse and a checksum): the
            # attempt of re-sent records, and the trace ids a dead letter keeps.
            MessageAttributeNames=[ATTEMPT_ATTRIBUTE, *TRACE_ATTRIBUTES],
        )
        self.metrics.polled()
        messages = response.get("Messages", [])
        if messages:
            self.handle(messages)
        return len(messages)

    def handle(self, messages: list[dict[str, Any]]) -> None:
        deliveries, done = self._parse(messages)
        records = [record for delivery in deliveries for record in delivery.records]
        later: list[Delivery] = []
        if records:
            self.metrics.batch_records(len(records))
        try:
            results = self._apply_waiting(records, deliveries, done)
        except StoreUnavailable:  # stopped while the store is still unreachable
            self._release(deliveries)
            return
        except Exception as exc:  # noqa: BLE001 - the store failed the batch: every record retries
            personal = [v for record in records for v in string_values(record.fields)]
            reason = f"store failed the batch: {failure_reason(exc, personal)}"
            # The reason, not the traceback: a driver's message may quote the records' values.
            logger.error("the store failed the batch; it will be retried", extra={"reason": reason})
            for delivery in deliveries:
                failed = [(record, reason) for record in delivery.records]
                self._settle(delivery, failed, done, later, quiet=True)
        else:
            traced = self._settle_all(deliveries, iter(results), done, later, now_utc())
            if traced:
                # One line per batch, as the Lambda logs: log shipping is billed per GB, and a
                # line per record would cost about as much as the records. Failures keep a line
                # each. Reconciliation reads these lines: keep their shape.
                logger.info("batch applied", extra={"events": traced})
        self._delete(done)
        self._retry_later(later)

    def _apply_waiting(self, records, deliveries, done) -> list[RecordResult]:
        """Apply the batch; while the store is unreachable, hold it and try again.

        Holding: the messages already dead-lettered are deleted (they must not come back), the
        others are kept invisible, and nothing counts as an attempt: the batch was received
        once. Raises StoreUnavailable if told to stop while the store is still unreachable."""
        next_heartbeat = 0.0
        while True:
            started = time.perf_counter()
            try:
                results = self.store.apply(records) if records else []
            except StoreUnavailable as exc:
                self._store_down(exc)
                if self.stop.is_set():
                    raise
                self._delete(done)
                done.clear()
                if time.monotonic() >= next_heartbeat:
                    next_heartbeat = time.monotonic() + HEARTBEAT_SECONDS
                    self._change_visibility(deliveries, HOLD_SECONDS, "keep the batch in hand")
                self.stop.wait(self._store_wait())
                continue
            if records:
                self.metrics.applied_in(time.perf_counter() - started)
            self._store_back()
            return results

    def _store_answers(self) -> bool:
        """While the store is unreachable the worker receives nothing: it checks the store,
        with backoff, until it takes writes again (True)."""
        try:
            self.store.check()
        except StoreUnavailable as exc:
            self._store_down(exc)
            self.stop.wait(self._store_wait())
            return False
        except Exception:  # noqa: BLE001, S110 - it answered (refusing the check's row): the
            pass  # records will say more, each on its own
        self._store_back()
        return True

    def _store_wait(self) -> float:
        return backoff_delay(
            self._store_failures, base=STORE_RETRY_BASE_SECONDS, cap=STORE_RETRY_CAP_SECONDS
        )

    def _store_down(self, exc: StoreUnavailable) -> None:
        self._store_failures += 1
        self.metrics.progressed()  # waiting is no reason for liveness to restart the consumer
        now = time.monotonic()
        if self.metrics.store_unreachable(exc.reason):
            logger.warning(
                "store unreachable; receiving nothing until it answers",
                extra={"reason": exc.reason},
            )
            self._down_logged_at = now
        elif not self._down_logged_at:
            self._down_logged_at = now  # another worker said it began
        elif now - self._down_logged_at >= STILL_DOWN_LOG_SECONDS:
            logger.warning(
                "store still unreachable",
                extra={"reason": exc.reason,
                       "seconds": round(self.metrics.seconds_store_unreachable())},
            )  # fmt: skip
            self._down_logged_at = now

    def _store_back(self) -> None:
        self._store_failures = 0
        self._down_logged_at = 0.0
        outage = self.metrics.store_reachable()
        if outage is not None:
            logger.info("store reachable again", extra={"outage_seconds": round(outage, 1)})

    def _release(self, deliveries: list[Delivery]) -> None:
        """Stopping with the store unreachable: the batch in hand goes back to the queue now,
        for the consumer that replaces this one (it counts one receive more)."""
        logger.warning(
            "stopping while the store is unreachable; the batch in hand goes back to the queue",
            extra={"messages": len(deliveries)},
        )
        self._change_visibility(deliveries, 0, "hand the batch back")

    def _change_visibility(self, deliveries: list[Delivery], seconds: int, why: str) -> None:
        if not deliveries:
            return
        entries = [
            {"Id": str(i), "ReceiptHandle": d.message["ReceiptHandle"],
             "VisibilityTimeout": seconds}
            for i, d in enumerate(deliveries)
        ]  # fmt: skip
        try:
            response = self.sqs.change_message_visibility_batch(
                QueueUrl=self.queue_url, Entries=entries
            )
        except (BotoCoreError, ClientError) as exc:
            problem: dict[str, Any] = {"error": error_code(exc)}
        else:
            if not response.get("Failed"):
                return
            problem = {"count": len(response["Failed"])}
        logger.warning("could not change the batch's visibility", extra={"to": why, **problem})

    def _settle_all(
        self, deliveries, results, done, later, applied_at: datetime
    ) -> dict[str, list[str]]:
        """Each delivery's results: what to delete, retry or dead-letter; the applied traces."""
        traced: dict[str, list[str]] = {}  # outcome -> "event_id/correlation_id", ...
        for delivery in deliveries:
            failed = []
            for record in delivery.records:
                result = next(results)
                if result.ok:
                    outcome = result.outcome or "applied"
                    self.metrics.add(outcome)
                    if outcome != "duplicate":  # a redelivery's age is not the pipeline's lag
                        self.metrics.lag(version_time(record.version), applied_at)
                    traced.setdefault(outcome, []).append(record.trace)
                else:
                    failed.append((record, result.error or "unknown error"))
            self._settle(delivery, failed, done, later)
        return traced

    def _settle(self, delivery, failed, done, later, *, quiet: bool = False) -> None:
        """Decide a delivery's fate once its records were applied or failed.

        All applied: delete it. Failures on their last attempt: each failed record goes to the
        DLQ on its own, with its reason, then the message is deleted. Otherwise, when every
        record failed, the message itself comes back after a backoff; when only some did,
        those are re-sent as a new message (delayed, its attempt counted) and this one deleted,
        so the applied records are not delivered again.
        """
        if not failed:
            done.append(delivery.message)
            return
        last = self._is_last_attempt(delivery)
        for record, reason in failed:
            with log_context(correlation_id=record.correlation_id, event_id=str(record.event_id)):
                if last:
                    logger.error("giving up on record", extra={"reason": reason})
                elif not quiet:
                    logger.warning("record failed; will retry", extra={"reason": reason})
            if not last:  # to be retried (when the store is down too: quiet is for the log)
                self.metrics.add("failed")
        if last:
            # Every failed record is sent (a list, not a generator: no short circuit); the message
            # goes only when all of them reached the DLQ.
            if all([self._dead_letter_record(delivery, r, why) for r, why in failed]):
                done.append(delivery.message)
        elif len(failed) == len(delivery.records) or not self._resend(delivery, failed):
            later.append(delivery)
        else:
            done.append(delivery.message)

    def _resend(self, delivery: Delivery, failed: list[tuple[DestinationRecord, str]]) -> bool:
        """The failed records of a pack as a new message, visible after the backoff."""
        pack = RecordPack(destination=self.store.destination, records=[r for r, _ in failed])
        try:
            self.sqs.send_message(
                QueueUrl=self.queue_url,
                MessageBody=pack.model_dump_json(),
                MessageAttributes={
                    **pack.message_attributes(),
                    **attempt_attribute(delivery.attempt + 1),
                },
                DelaySeconds=self.backoff(delivery.attempt),
            )
        except (BotoCoreError, ClientError) as exc:
            # Not fatal: the whole pack comes back after the backoff (the stores ignore what was
            # applied). Needs sqs:SendMessage on the consumer's own queue.
            logger.warning(
                "could not re-send the failed records of a pack; it will be retried whole",
                extra={"error": error_code(exc), "records": len(failed)},
            )
            return False
        return True

    def _parse(self, messages: list[dict[str, Any]]) -> tuple[list[Delivery], list[dict[str, Any]]]:
        """The deliveries to apply, and the messages that can never be applied, already
        dead-lettered (so they are deleted with the batch)."""
        deliveries: list[Delivery] = []
        done: list[dict[str, Any]] = []
        for message in messages:
            attempt = receive_count(message)
            try:
                deliveries.append(self._delivery(message))
                continue
            except Poison as exc:
                reason, attempt = str(exc), exc.attempt or attempt
            except Exception as exc:  # noqa: BLE001 - whatever else a body can cause, it alone fails
                reason = f"unreadable message: {unexpected_error(exc)}"
            if self._dead_letter(message["Body"], reason, attempt, _trace_attributes(message)):
                done.append(message)
        return deliveries, done

    def _delivery(self, message: dict[str, Any]) -> Delivery:
        """The records of a message for this destination; Poison says why there are none."""
        try:
            attempt = delivery_attempt(message)
        except BadAttempt as exc:
            raise Poison(str(exc)) from None
        try:
            body = parse_queue_message(message["Body"])
        except ValidationError as exc:
            problems = validation_problems(exc)
            raise Poison(f"not a destination record or pack: {problems}", attempt) from None
        if body.destination != self.store.destination:
            kind = "pack" if isinstance(body, RecordPack) else "record"
            raise Poison(
                f"a {body.destination} {kind} on the {self.store.destination} queue: "
                "send it to its own destination's queue",
                attempt,
            )
        return Delivery.of(message, body, attempt)

    def _is_last_attempt(self, delivery: Delivery) -> bool:
        limit = self.redrive.max_receive_count
        return limit is not None and delivery.attempt >= limit

    def _dead_letter_record(self, delivery: Delivery, record: DestinationRecord, reason: str):
        # A single-record message goes as it came; a pack's record goes on its own, so that
        # `datasync dlq` shows it with its reason and a redrive sends back only that record.
        body = record.model_dump_json() if delivery.packed else delivery.message["Body"]
        return self._dead_letter(body, reason, delivery.attempt, record.message_attributes())

    def _dead_letter(self, body: str, reason: str, attempt: int, attributes) -> bool:
        if self.redrive.dlq_url is None:
            return False
        try:
            dead_letter(
                self.sqs, self.redrive.dlq_url, body, reason=reason, stage="consume",
                receive_count=attempt, attributes=attributes,
            )  # fmt: skip
        except (BotoCoreError, ClientError):
            logger.exception("could not dead-letter; the message stays in the queue")
            return False
        self.metrics.add("dead_lettered")
        return True

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        if not messages:
            return
        response = self.sqs.delete_message_batch(
            QueueUrl=self.queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )
        # A failed delete means the message comes back; the store will see a duplicate.
        if response.get("Failed"):
            logger.warning("some deletes failed", extra={"count": len(response["Failed"])})

    def _retry_later(self, deliveries: list[Delivery]) -> None:
        if not deliveries:
            return
        self.sqs.change_message_visibility_batch(
            QueueUrl=self.queue_url,
            Entries=[
                {
                    "Id": str(i),
                    "ReceiptHandle": d.message["ReceiptHandle"],
                    "VisibilityTimeout": self.backoff(d.attempt),
                }
                for i, d in enumerate(deliveries)
            ],
        )


@dataclass(frozen=True)
class Delivery:
    """One received message, with the records it carries (a pack's, or a single record's)."""

    message: dict[str, Any]
    records: list[DestinationRecord]
    packed: bool
    attempt: int  # of these records, this delivery included

    @classmethod
    def of(
        cls, message: dict[str, Any], body: RecordPack | DestinationRecord, attempt: int
    ) -> Delivery:
        packed = isinstance(body, RecordPack)
        records = body.records if isinstance(body, RecordPack) else [body]
        return cls(message, records, packed, attempt)


class Poison(ValueError):
    """A message that can never be applied; the message says why (no personal data)."""

    def __init__(self, reason: str, attempt: int | None = None):
        super().__init__(reason)
        self.attempt = attempt  # of its records, when the message says (for the dead letter)


def _trace_attributes(message: dict[str, Any]) -> dict[str, Any]:
    """The received trace attributes of a message, for its dead letter."""
    return {
        name: {"DataType": "String", "StringValue": value}
        for name, value in string_attributes(message).items()
        if name in TRACE_ATTRIBUTES
    }
