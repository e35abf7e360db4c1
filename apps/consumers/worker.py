"""The consumer loop: receive a batch, apply it, delete only what was applied.

Delivery is at-least-once, so the store is idempotent (event ids) and order-safe
(per-field versions); the worker's job is to never lose a message:
- a message is deleted only after its record is committed to the store;
- a record that failed becomes visible again after an exponential backoff;
- on its last allowed delivery (the queue's ``maxReceiveCount``) a failing message is
  copied to the DLQ with the reason and then deleted, so the DLQ says why;
- a message that can never be applied (not a destination record) goes to the DLQ at once;
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
    is_last_attempt,
    receive_count,
    retry_delay,
    string_attributes,
)
from datasync.core.stores import SqlStore

logger = logging.getLogger("datasync.consumer")

LONG_POLL_SECONDS = 20
BATCH_SIZE = 10


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

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.poll_once()
            except (BotoCoreError, ClientError) as exc:
                # The queue endpoint is unreachable or refusing: back off, keep the loop alive.
                logger.warning("receive failed, backing off", extra={"error": type(exc).__name__})
                stop.wait(2)

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
        records: list[tuple[dict[str, Any], DestinationRecord]] = []
        done: list[dict[str, Any]] = []
        for message in messages:
            try:
                records.append((message, DestinationRecord.from_json(message["Body"])))
            except ValidationError as exc:
                reason = f"not a destination record ({exc.error_count()} validation errors)"
                if self._dead_letter(message, reason):
                    done.append(message)
        try:
            results = self.store.apply(record for _, record in records)
        except Exception:  # noqa: BLE001 - the store is down: every record waits and retries
            logger.exception("store unavailable; the batch will be retried")
            self._retry_later([message for message, _ in records])
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
