"""SQS helpers shared by the runtimes (Lambdas, consumers, the API's status page, the CLI).

- ``send_batch``: SendMessageBatch in chunks of at most 10 messages and 256 KiB, checking the
  per-entry ``Failed`` list (like PutEvents, a 200 can hide refused entries) and retrying only
  those.
- ``dead_letter``: put a message in a DLQ *with the reason*, so an operator reading the DLQ
  sees why it is there (a redrive policy alone would move it silently); a message too large
  to carry the reason as well is cut to fit, and the reason says so.
- ``retry_delay``: how long a failed message stays invisible before its next delivery.
- ``delivery_attempt``: the attempt of a message's records, counted across re-sends (a
  consumer re-sends a pack's failed records as a new message, whose receive count restarts);
  an attempt attribute that is not a whole number from 1 to MAX_ATTEMPT makes the message poison.
- ``queue_depth``: messages waiting and in flight, as `datasync status`, `dlq` and the status
  page show them.

Every wait here follows ``datasync.core.retry`` (exponential, capped, equal jitter).
"""

from __future__ import annotations

import re
import time
import traceback
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from datasync.core.retry import backoff_delay, backoff_seconds

if TYPE_CHECKING:
    from pydantic import ValidationError

SQS_BATCH_LIMIT = 10
# The largest message our queues take, body and attributes (their MaximumMessageSize: SQS's
# default, which Terraform keeps), and the most a SendMessageBatch call carries under any
# queue's limit.
MAX_MESSAGE_BYTES = 256 * 1024
MAX_REASON_CHARS = 1000
# Re-sending refused entries: a short pause (0.1, 0.2 ... s), a refusal is usually momentary.
RESEND_BASE_SECONDS = 0.1
RESEND_CAP_SECONDS = 1.0
# A failed message becomes visible again after about 2, 4, 8 ... s, at most 5 minutes.
RETRY_BASE_SECONDS = 2
RETRY_CAP_SECONDS = 300
# The delivery attempt of re-sent records (see delivery_attempt).
ATTEMPT_ATTRIBUTE = "delivery_attempt"
# SQS's largest maxReceiveCount: no record is ever delivered more often than that.
MAX_ATTEMPT = 1000


class SendError(RuntimeError):
    """Some messages could not be sent; ``failed_ids`` are the caller's ids of those.

    ``reason`` names what refused them (an SQS error code, never a message body).
    """

    def __init__(self, message: str, failed_ids: list[str], reason: str):
        super().__init__(message)
        self.failed_ids = failed_ids
        self.reason = reason


@dataclass(frozen=True)
class OutgoingMessage:
    id: str  # unique within one call; returned in SendError.failed_ids
    body: str
    attributes: dict[str, Any]
    delay_seconds: int = 0  # a retry's backoff (SQS: at most 900)

    @property
    def size(self) -> int:
        return message_size(self.body, self.attributes)

    def entry(self, entry_id: str) -> dict[str, Any]:
        """This message as a SendMessageBatch entry."""
        entry = {"Id": entry_id, "MessageBody": self.body, "MessageAttributes": self.attributes}
        if self.delay_seconds:
            entry["DelaySeconds"] = self.delay_seconds
        return entry


def send_batch(sqs: Any, queue_url: str, messages: Sequence[OutgoingMessage], attempts: int = 3):
    """Send all messages or raise SendError naming the ones that were not accepted.

    A refused entry and a failed call (the queue missing or unreachable) are retried alike,
    ``attempts`` times in all: a chunk whose call failed counts as refused entry by entry.
    """
    pending = list(messages)
    reason = ""
    for attempt in range(1, attempts + 1):
        failed: list[OutgoingMessage] = []
        for chunk in _chunks(pending):
            refused, problem = _send_chunk(sqs, queue_url, chunk)
            failed += refused
            reason = problem or reason
        if not failed:
            return
        pending = failed
        if attempt < attempts:
            time.sleep(backoff_delay(attempt, base=RESEND_BASE_SECONDS, cap=RESEND_CAP_SECONDS))
    raise SendError(
        f"{len(pending)} message(s) not accepted by {queue_url}: {reason}",
        [m.id for m in pending],
        reason,
    )


def _chunks(messages: list[OutgoingMessage]) -> Iterator[list[OutgoingMessage]]:
    """The messages in order, in calls SQS accepts: at most 10 and 256 KiB in all."""
    chunk: list[OutgoingMessage] = []
    size = 0
    for message in messages:
        if chunk and (len(chunk) == SQS_BATCH_LIMIT or size + message.size > MAX_MESSAGE_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(message)
        size += message.size
    if chunk:
        yield chunk


def message_size(body: str, attributes: dict[str, Any] | None = None) -> int:
    """A message's size as SQS counts it: the body, and each attribute's name, type and value."""
    size = len(body.encode())
    for name, value in (attributes or {}).items():
        size += len(name.encode()) + len(value.get("DataType", "").encode())
        size += len(str(value.get("StringValue", "")).encode()) + len(value.get("BinaryValue", b""))
    return size


def _send_chunk(
    sqs: Any, queue_url: str, chunk: list[OutgoingMessage]
) -> tuple[list[OutgoingMessage], str]:
    """One SendMessageBatch: the messages it did not accept, and why."""
    by_entry_id = {str(i): m for i, m in enumerate(chunk)}
    try:
        response = sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[m.entry(entry_id) for entry_id, m in by_entry_id.items()],
        )
    except (BotoCoreError, ClientError) as exc:
        return chunk, f"SendMessageBatch failed: {error_code(exc)}"
    refused = response.get("Failed", [])
    codes = sorted({f.get("Code", "unknown") for f in refused})
    return [by_entry_id[f["Id"]] for f in refused], (
        f"entries refused: {', '.join(codes)}" if refused else ""
    )


def error_code(exc: BotoCoreError | ClientError) -> str:
    """An AWS error's code (ClientError) or class name (connection, timeout ...): no payloads."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or type(exc).__name__)
    return type(exc).__name__


def dead_letter_attributes(
    reason: str,
    stage: str,
    attributes: dict[str, Any] | None = None,
    *,
    receive_count: int | None = None,
):
    """Message attributes of a dead letter: why, where, when, after how many deliveries
    (plus the original ones)."""
    merged = dict(attributes or {})
    merged.update(
        {
            "failure_reason": {"DataType": "String", "StringValue": reason[:MAX_REASON_CHARS]},
            "failure_stage": {"DataType": "String", "StringValue": stage},
            "failed_at": {"DataType": "String", "StringValue": datetime.now(UTC).isoformat()},
        }
    )
    if receive_count is not None:
        merged["failure_receive_count"] = {"DataType": "Number", "StringValue": str(receive_count)}
    return merged


def dead_letter(
    sqs: Any,
    dlq_url: str,
    body: str,
    *,
    reason: str,
    stage: str,
    attributes=None,
    receive_count: int | None = None,
):
    merged = dead_letter_attributes(reason, stage, attributes, receive_count=receive_count)
    if message_size(body, merged) > MAX_MESSAGE_BYTES:
        body, merged = _fit(body, reason, stage, receive_count)
    sqs.send_message(QueueUrl=dlq_url, MessageBody=body, MessageAttributes=merged)


def _fit(body: str, reason: str, stage: str, receive_count: int | None):
    """A dead letter too large for SQS once the reason is attached: without the message's own
    attributes, and its body cut to fit (only a crafted message gets here: what the pipeline
    writes stays well under the limit)."""
    size = len(body.encode())
    note = f"; body cut from {size} bytes to fit in the DLQ with this reason"
    merged = dead_letter_attributes(reason[: MAX_REASON_CHARS - len(note)] + note, stage,
                                    receive_count=receive_count)  # fmt: skip
    room = MAX_MESSAGE_BYTES - message_size("", merged)
    return body.encode()[:room].decode(errors="ignore"), merged


def failure_reason(exc: BaseException, personal_values: Iterable[str] = ()) -> str:
    """``Type: message`` of an unexpected error, fit for a DLQ attribute and a log line.

    Messages of unexpected errors may quote what they choked on, so every value of the input
    that could be personal data (``personal_values``: the strings of the event or record) is
    cut out before the reason leaves the process.
    """
    message = str(exc)
    for value in sorted({v for v in personal_values if len(v) >= 2}, key=len, reverse=True):
        message = message.replace(value, "<redacted>")
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def validation_problems(exc: ValidationError) -> str:
    """What pydantic found wrong, as ``field: message; ...``, without the input values (the
    reason lands in a DLQ attribute and in logs, and inputs carry personal data)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
        for err in exc.errors(include_input=False, include_url=False)
    )


def unexpected_error(exc: BaseException) -> str:
    """An unexpected error's type and where it was raised, without its message (which may
    quote personal data): enough to find the bug, safe for logs and DLQ attributes."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    where = frames[-1]
    return f"{type(exc).__name__} in {where.name} ({Path(where.filename).name}:{where.lineno})"


def string_values(value: Any) -> Iterator[str]:
    """Every string inside a JSON-like value (dict values, list items), for ``failure_reason``."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from string_values(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from string_values(item)


def queue_depth(sqs: Any, queue_url: str) -> dict[str, int]:
    """SQS's approximate counts: ``visible`` (waiting) and ``in_flight`` (received, not yet
    deleted)."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return {
        "visible": int(attributes.get("ApproximateNumberOfMessages", 0)),
        "in_flight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
    }


def receive_count(message: dict[str, Any]) -> int:
    """ApproximateReceiveCount of an SQS message (1 on first delivery)."""
    attributes = message.get("Attributes") or message.get("attributes") or {}
    return int(attributes.get("ApproximateReceiveCount", 1))


class BadAttempt(ValueError):
    """A message's ATTEMPT_ATTRIBUTE is not an attempt: the message is poison."""


def delivery_attempt(message: dict[str, Any]) -> int:
    """How many times the records of this message have been delivered, this time included.

    A message that re-sends records which failed (a pack's failures, on their own) starts
    again at ApproximateReceiveCount 1, so it carries the attempts so far in ATTEMPT_ATTRIBUTE.
    Never less than the receive count: the queue's redrive policy must not move a message
    before the consumer dead-letters it with its reason.

    Raises BadAttempt when the attribute is not a whole number from 1 to MAX_ATTEMPT in ASCII
    digits (``"²".isdigit()`` is true, and ``int()`` of 5,000 digits raises)."""
    carried = string_attributes(message).get(ATTEMPT_ATTRIBUTE, "1")
    if re.fullmatch(r"[1-9][0-9]{0,3}", carried) is None or int(carried) > MAX_ATTEMPT:
        raise BadAttempt(
            f"the {ATTEMPT_ATTRIBUTE} attribute is not a whole number from 1 to {MAX_ATTEMPT}"
        )
    return int(carried) + receive_count(message) - 1


def attempt_attribute(attempt: int) -> dict[str, Any]:
    """The message attribute of a re-sent message whose records are on delivery ``attempt``."""
    return {ATTEMPT_ATTRIBUTE: {"DataType": "Number", "StringValue": str(attempt)}}


def retry_delay(receive_count: int) -> int:
    """Seconds until a message that failed on delivery ``receive_count`` is visible again."""
    return backoff_seconds(receive_count, base=RETRY_BASE_SECONDS, cap=RETRY_CAP_SECONDS)


def string_attributes(message: dict[str, Any]) -> dict[str, str]:
    """Message attributes as plain strings, from a boto3 message or a Lambda SQS record."""
    raw = message.get("MessageAttributes") or message.get("messageAttributes") or {}
    values = {}
    for name, value in raw.items():
        text = value.get("StringValue", value.get("stringValue"))
        if text is not None:
            values[name] = text
    return values
