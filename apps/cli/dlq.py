"""Looking into a destination's DLQ, sending its messages back, and purging it.

One DLQ per destination holds failures of every stage. A message's body says where it
belongs: an EventBridge event (it has ``detail``) goes back to the buffer queue, where the
Lambda transforms it again; a destination record goes back to the destination queue. Records
of a pack are dead-lettered one by one, each with its own reason, so a redrive sends back only
the records that failed (a whole pack is in a DLQ only when it could not be read at all).
Redrive is safe to repeat: the transform is deterministic and the stores ignore event ids
they have already applied, and a message is deleted from the DLQ only after it was sent. A
message that failed for a reason that still holds will simply come back to the DLQ, so fix
the cause first (the reasons are in `datasync dlq list <dest>`).

SQS cannot be read without receiving: listing and redrive receive with a visibility timeout
long enough that one pass never sees a message twice, then make what they did not move
visible again at once (ChangeMessageVisibilityBatch 0), so a listing hides nothing from a
redrive that follows it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from datasync.core.queues import ATTEMPT_ATTRIBUTE, SQS_BATCH_LIMIT, string_attributes

# Set by dead_letter() (and the attempt count of re-sent records); dropped on redrive, so a
# message that fails again gets fresh ones and its full number of attempts.
FAILURE_ATTRIBUTES = (
    "failure_reason",
    "failure_stage",
    "failed_at",
    "failure_receive_count",
    ATTEMPT_ATTRIBUTE,
)
# Long enough for one pass over a large DLQ; what a pass does not move is released at its end.
PASS_VISIBILITY_SECONDS = 300
FILTER_KEYS = ("reason", "stage", "event_id", "correlation_id")


def describe(message: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    attributes = string_attributes(message)
    sent_at = message.get("Attributes", {}).get("SentTimestamp")
    now = time.time() if now is None else now
    described = {
        "message_id": message["MessageId"],
        "reason": attributes.get("failure_reason") or _eventbridge_reason(attributes),
        "stage": attributes.get("failure_stage"),
        "receive_count": attributes.get("failure_receive_count"),
        "event_id": attributes.get("event_id"),
        "correlation_id": attributes.get("correlation_id"),
        "sent_at": sent_at,
        "age_seconds": round(now - int(sent_at) / 1000, 1) if sent_at else None,
    }
    if "event_ids" in attributes:  # a whole pack (one that could not be read)
        described["records"] = attributes.get("record_count")
        described["event_ids"] = attributes["event_ids"].split(",")
        described["correlation_ids"] = attributes.get("correlation_ids", "").split(",")
    return described


def _eventbridge_reason(attributes: dict[str, str]) -> str:
    """EventBridge's own DLQ entries carry ERROR_CODE/ERROR_MESSAGE instead of our reason."""
    if "ERROR_CODE" in attributes:
        return f"{attributes['ERROR_CODE']}: {attributes.get('ERROR_MESSAGE', '')}".strip(": ")
    return "moved by the queue's redrive policy"


def parse_filters(specs: list[str]) -> dict[str, str]:
    """``["reason=store was down", "stage=consume"]`` -> {"reason": …, "stage": …}."""
    filters = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or key not in FILTER_KEYS or not value:
            raise ValueError(
                f"bad filter {spec!r}: use KEY=VALUE with KEY one of {', '.join(FILTER_KEYS)}"
            )
        filters[key] = value
    return filters


def matches(described: dict[str, Any], filters: dict[str, str]) -> bool:
    """Every filter holds: ``reason`` is a case-insensitive substring, the others exact."""
    for key, wanted in filters.items():
        value = described.get(key) or ""
        if key == "reason":
            if wanted.lower() not in value.lower():
                return False
        elif value != wanted and wanted not in (described.get(f"{key}s") or []):
            return False
    return True


def receive_pass(sqs: Any, dlq_url: str) -> Iterator[list[dict[str, Any]]]:
    """Batches of up to 10 messages, each message once, until the DLQ has nothing visible."""
    seen: set[str] = set()
    while True:
        messages = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=SQS_BATCH_LIMIT,
            # 1 s, not 0: a short poll may answer empty while messages wait on other servers.
            VisibilityTimeout=PASS_VISIBILITY_SECONDS,
            WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
        ).get("Messages", [])
        fresh = [m for m in messages if m["MessageId"] not in seen]
        if not fresh:
            return
        seen.update(m["MessageId"] for m in fresh)
        yield fresh


def release(sqs: Any, dlq_url: str, messages: list[dict[str, Any]]) -> None:
    """Make received messages visible again at once (nothing was done with them)."""
    for start in range(0, len(messages), SQS_BATCH_LIMIT):
        chunk = messages[start : start + SQS_BATCH_LIMIT]
        sqs.change_message_visibility_batch(
            QueueUrl=dlq_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(chunk)
            ],
        )


def list_messages(sqs: Any, dlq_url: str, *, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` DLQ messages, described, without consuming any."""
    received: list[dict[str, Any]] = []
    try:
        for batch in receive_pass(sqs, dlq_url):
            received.extend(batch)
            if len(received) >= limit:
                break
    finally:
        release(sqs, dlq_url, received)
    return [describe(m) for m in received[:limit]]


def is_bus_event(body: str) -> bool:
    try:
        return isinstance(json.loads(body).get("detail"), dict)
    except (ValueError, AttributeError):
        return False


@dataclass
class RedriveReport:
    to_buffer: int = 0
    to_queue: int = 0
    skipped: int = 0  # did not match the filter, or over the limit: left in the DLQ
    failed: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def moved(self) -> int:
        return self.to_buffer + self.to_queue

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "to_buffer_queue": self.to_buffer,
            "to_queue": self.to_queue,
            "left_in_dlq": self.skipped,
            "failed": self.failed,
        }


def dead_lettered_since(message: dict[str, Any], since_ms: int) -> bool:
    """Whether SQS received this message after ``since_ms`` (epoch milliseconds)."""
    sent = message.get("Attributes", {}).get("SentTimestamp")
    return sent is not None and int(sent) > since_ms


def redrive(
    sqs: Any,
    dlq_url: str,
    *,
    buffer_url: str,
    queue_url: str,
    limit: int,
    filters: dict[str, str] | None = None,
    dry_run: bool = False,
    on_batch: Callable[[RedriveReport], None] = lambda report: None,
    clock: Callable[[], float] = time.time,
) -> RedriveReport:
    """Move up to ``limit`` matching messages back, in batches of 10.

    Each is deleted from the DLQ only after SQS confirmed its send; one whose send failed stays
    (and is reported). Messages not moved (no match, over the limit, a dry run) are made
    visible again when the pass ends. Only what was in the DLQ when the redrive started moves:
    a message that still fails comes back while the pass goes on, as a new message, and moving
    it again would go round in circles until the limit.
    """
    report = RedriveReport(dry_run=dry_run)
    started_ms = int(clock() * 1000)
    kept: list[dict[str, Any]] = []
    unsent: list[dict[str, Any]] = []  # their send failed: they stay, visible again
    try:
        for batch in receive_pass(sqs, dlq_url):
            chosen = []
            for message in batch:
                if dead_lettered_since(message, started_ms):
                    kept.append(message)  # came (back) during this pass: not this pass's
                elif len(chosen) + report.moved < limit and matches(
                    describe(message), filters or {}
                ):
                    chosen.append(message)
                else:
                    kept.append(message)
            if dry_run:
                kept.extend(chosen)
                for message in chosen:
                    if is_bus_event(message["Body"]):
                        report.to_buffer += 1
                    else:
                        report.to_queue += 1
            else:
                unsent.extend(_move(sqs, dlq_url, chosen, buffer_url, queue_url, report))
            on_batch(report)
            if report.moved >= limit:
                break
    finally:
        report.skipped = len(kept)
        release(sqs, dlq_url, kept + unsent)
    return report


def _move(
    sqs: Any,
    dlq_url: str,
    messages: list[dict[str, Any]],
    buffer_url: str,
    queue_url: str,
    report: RedriveReport,
) -> list[dict[str, Any]]:
    """Send, then delete what was sent; returns the messages whose send failed."""
    by_target: dict[str, list[dict[str, Any]]] = {buffer_url: [], queue_url: []}
    for message in messages:
        by_target[buffer_url if is_bus_event(message["Body"]) else queue_url].append(message)
    sent: list[dict[str, Any]] = []
    unsent: list[dict[str, Any]] = []
    for target, batch in by_target.items():
        if not batch:
            continue
        response = sqs.send_message_batch(
            QueueUrl=target,
            Entries=[
                {"Id": str(i), "MessageBody": m["Body"], "MessageAttributes": _kept_attributes(m)}
                for i, m in enumerate(batch)
            ],
        )
        for entry in response.get("Successful", []):
            sent.append(batch[int(entry["Id"])])
            if target == buffer_url:
                report.to_buffer += 1
            else:
                report.to_queue += 1
        for entry in response.get("Failed", []):
            unsent.append(batch[int(entry["Id"])])
            report.failed.append(batch[int(entry["Id"])]["MessageId"])
    if sent:
        sqs.delete_message_batch(
            QueueUrl=dlq_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(sent)
            ],
        )
    return unsent


def _kept_attributes(message: dict[str, Any]) -> dict[str, Any]:
    return {
        name: value
        for name, value in message.get("MessageAttributes", {}).items()
        if name not in FAILURE_ATTRIBUTES
    }
