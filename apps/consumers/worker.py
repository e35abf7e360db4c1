"""The consumer loop: receive a batch, apply it, delete only what was applied.

Delivery is at-least-once, so the store is idempotent (event ids) and order-safe
(per-field versions); the worker's job is to never lose a message:
- a message is deleted only after its record is committed to the store;
- a record that failed becomes visible again after an exponential backoff;
- on its last allowed delivery (the queue's ``maxReceiveCount``) a failing message is
  copied to the DLQ with the reason and then deleted, so the DLQ says why;
- a message that can never be applied (not a destination record, or a record of another
  destination) goes to the DLQ at once;
- when the store is down the whole batch waits and retries, and messages on their last
  delivery are dead-lettered with that reason too (the redrive policy would move them silently);
- on SIGTERM the worker finishes the batch in hand and exits.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from datasync.contract import DestinationRecord
from datasync.core.logging import log_context
from datasync.core.queues import (
    dead_letter,
    error_code,
    failure_reason,
    is_last_attempt,
    receive_count,
    retry_delay,
    string_attributes,
    string_values,
)
from datasync.core.retry import backoff_delay
from datasync.core.stores import SqlStore

logger = logging.getLogger("datasync.consumer")

# The SQS maximum, and the default of DATASYNC_RECEIVE_WAIT_SECONDS.
LONG_POLL_SECONDS = 20
BATCH_SIZE = 10
# Waiting out an unreachable queue: about 1, 2, 4 ... s, at most 20 s between attempts.
RECEIVE_RETRY_BASE_SECONDS = 1
RECEIVE_RETRY_CAP_SECONDS = 20
HOUSEKEEPING_SECONDS = 60


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
class Metrics:
    counts: Counter[str] = field(default_factory=Counter)
    last_poll: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, value: int = 1) -> None:
        with self._lock:
            self.counts[name] += value

    def polled(self) -> None:
        self.last_poll = time.monotonic()

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)


@dataclass
class ConsumerWorker:
    sqs: Any
    queue_url: str
    store: SqlStore
    redrive: RedriveTarget
    metrics: Metrics
    wait_seconds: int = LONG_POLL_SECONDS
    backoff: Callable[[int], int] = retry_delay
    _next_housekeeping: float = 0.0

    def run(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                self.poll_once()
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
            else:
                failures = 0
            self._housekeeping()

    def _housekeeping(self) -> None:
        """Now and then, between batches: forget for good the marketing details nobody may see
        once their retention is over (datasync/contract/consent.py says why they wait)."""
        now = time.monotonic()
        if now < self._next_housekeeping:
            return
        self._next_housekeeping = now + HOUSEKEEPING_SECONDS
        try:
            forgotten = self.store.forget_expired_hidden()
        except Exception:  # noqa: BLE001 - the store may be down; the next round retries
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
            MessageAttributeNames=["All"],
        )
        self.metrics.polled()
        messages = response.get("Messages", [])
        if messages:
            self.handle(messages)
        return len(messages)

    def handle(self, messages: list[dict[str, Any]]) -> None:
        records, done = self._parse(messages)
        try:
            results = self.store.apply(record for _, record in records)
        except Exception as exc:  # noqa: BLE001 - the store is down: every record waits and retries
            logger.exception("store unavailable; the batch will be retried")
            personal = [v for _, record in records for v in string_values(record.fields)]
            reason = f"store unavailable: {failure_reason(exc, personal)}"
            waiting = []
            for message, _ in records:
                if self._is_last_attempt(message) and self._dead_letter(message, reason):
                    done.append(message)
                else:
                    waiting.append(message)
            self._retry_later(waiting)
            self._delete(done)
            return
        failed = []
        traced: dict[str, list[str]] = {}  # outcome -> "event_id/correlation_id", ...
        for (message, record), result in zip(records, results, strict=True):
            with log_context(correlation_id=record.correlation_id, event_id=str(record.event_id)):
                if result.ok:
                    outcome = result.outcome or "applied"
                    self.metrics.add(outcome)
                    traced.setdefault(outcome, []).append(
                        f"{record.event_id}/{record.correlation_id}"
                    )
                    done.append(message)
                elif self._is_last_attempt(message):
                    logger.error("giving up on record", extra={"reason": result.error})
                    if self._dead_letter(message, result.error or "unknown error"):
                        done.append(message)
                else:
                    logger.warning("record failed; will retry", extra={"reason": result.error})
                    self.metrics.add("failed")
                    failed.append(message)
        self._delete(done)
        self._retry_later(failed)
        if traced:
            # One line per batch, as the Lambda logs: log shipping is billed per GB, and a line
            # per record would cost about as much as the records. Failures keep a line each.
            logger.info("batch applied", extra={"events": traced})

    def _parse(self, messages: list[dict[str, Any]]):
        """(message, record) pairs to apply, and the messages that can never be applied,
        already dead-lettered (so they are deleted with the batch)."""
        records: list[tuple[dict[str, Any], DestinationRecord]] = []
        done: list[dict[str, Any]] = []
        for message in messages:
            try:
                record = DestinationRecord.from_json(message["Body"])
            except ValidationError as exc:
                reason = f"not a destination record ({exc.error_count()} validation errors)"
            else:
                if record.destination == self.store.destination:
                    records.append((message, record))
                    continue
                reason = (
                    f"a {record.destination} record on the {self.store.destination} queue: "
                    "send it to its own destination's queue"
                )
            if self._dead_letter(message, reason):
                done.append(message)
        return records, done

    def _is_last_attempt(self, message: dict[str, Any]) -> bool:
        limit = self.redrive.max_receive_count
        return limit is not None and is_last_attempt(message, limit)

    def _dead_letter(self, message: dict[str, Any], reason: str) -> bool:
        if self.redrive.dlq_url is None:
            return False
        try:
            dead_letter(
                self.sqs,
                self.redrive.dlq_url,
                message["Body"],
                reason=reason,
                stage="consume",
                receive_count=receive_count(message),
                attributes={
                    name: {"DataType": "String", "StringValue": value}
                    for name, value in string_attributes(message).items()
                    if not name.startswith("failure_") and name != "failed_at"
                },
            )
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

    def _retry_later(self, messages: list[dict[str, Any]]) -> None:
        if not messages:
            return
        self.sqs.change_message_visibility_batch(
            QueueUrl=self.queue_url,
            Entries=[
                {
                    "Id": str(i),
                    "ReceiptHandle": m["ReceiptHandle"],
                    "VisibilityTimeout": self.backoff(receive_count(m)),
                }
                for i, m in enumerate(messages)
            ],
        )
