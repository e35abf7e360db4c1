"""SQS helpers shared by the Lambdas and the consumers.

- ``send_batch``: SendMessageBatch in chunks of 10, checking the per-entry ``Failed`` list
  (like PutEvents, a 200 can hide refused entries) and retrying only those.
- ``dead_letter``: put a message in a DLQ *with the reason*, so an operator reading the DLQ
  sees why it is there (a redrive policy alone would move it silently).
- ``retry_delay``: exponential visibility backoff for a message that failed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SQS_BATCH_LIMIT = 10
MAX_REASON_CHARS = 1000


class SendError(RuntimeError):
    """Some messages could not be sent; ``failed_ids`` are the caller's ids of those."""

    def __init__(self, message: str, failed_ids: list[str]):
        super().__init__(message)
        self.failed_ids = failed_ids


@dataclass(frozen=True)
class OutgoingMessage:
    id: str  # unique within one call; returned in SendError.failed_ids
    body: str
    attributes: dict[str, Any]


def send_batch(sqs: Any, queue_url: str, messages: Sequence[OutgoingMessage], attempts: int = 3):
    """Send all messages or raise SendError naming the ones that were not accepted."""
    pending = list(messages)
    for attempt in range(attempts):
        failed: list[OutgoingMessage] = []
        for start in range(0, len(pending), SQS_BATCH_LIMIT):
            chunk = pending[start : start + SQS_BATCH_LIMIT]
            by_entry_id = {str(i): m for i, m in enumerate(chunk)}
            response = sqs.send_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": entry_id, "MessageBody": m.body, "MessageAttributes": m.attributes}
                    for entry_id, m in by_entry_id.items()
                ],
            )
            failed += [by_entry_id[f["Id"]] for f in response.get("Failed", [])]
        if not failed:
            return
        pending = failed
        time.sleep(0.1 * 2**attempt)
    raise SendError(
        f"{len(pending)} message(s) not accepted by {queue_url}", [m.id for m in pending]
    )


def dead_letter_attributes(reason: str, stage: str, attributes: dict[str, Any] | None = None):
    """Message attributes of a dead letter: why, where, when (plus the original ones)."""
    merged = dict(attributes or {})
    merged.update(
        {
            "failure_reason": {"DataType": "String", "StringValue": reason[:MAX_REASON_CHARS]},
            "failure_stage": {"DataType": "String", "StringValue": stage},
            "failed_at": {"DataType": "String", "StringValue": datetime.now(UTC).isoformat()},
        }
    )
    return merged


def dead_letter(sqs: Any, dlq_url: str, body: str, *, reason: str, stage: str, attributes=None):
    sqs.send_message(
        QueueUrl=dlq_url,
        MessageBody=body,
        MessageAttributes=dead_letter_attributes(reason, stage, attributes),
    )


def receive_count(message: dict[str, Any]) -> int:
    """ApproximateReceiveCount of an SQS message (1 on first delivery)."""
    attributes = message.get("Attributes") or message.get("attributes") or {}
    return int(attributes.get("ApproximateReceiveCount", 1))


def is_last_attempt(message: dict[str, Any], max_receive_count: int) -> bool:
    """True when the queue's redrive policy would move this message after a failure."""
    return receive_count(message) >= max_receive_count


def retry_delay(receive_count: int, *, base: int = 2, cap: int = 300) -> int:
    """Seconds until a failed message is visible again: 2, 4, 8, ... capped."""
    return min(cap, base * 2 ** max(0, receive_count - 1))


def string_attributes(message: dict[str, Any]) -> dict[str, str]:
    """Message attributes as plain strings, from a boto3 message or a Lambda SQS record."""
    raw = message.get("MessageAttributes") or message.get("messageAttributes") or {}
    values = {}
    for name, value in raw.items():
        text = value.get("StringValue", value.get("stringValue"))
        if text is not None:
            values[name] = text
    return values
