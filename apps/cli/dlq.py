"""Looking into a destination's DLQ, and sending its messages back to be processed again.

One DLQ per destination holds failures of every stage. A message's body says where it
belongs: an EventBridge event (it has ``detail``) goes back to the buffer queue, where the
Lambda transforms it again; a destination record goes back to the destination queue. Records
of a pack are dead-lettered one by one, each with its own reason, so a redrive sends back only
the records that failed (a whole pack is in a DLQ only when it could not be read at all).
Redrive is safe to repeat: the transform is deterministic and the stores ignore event ids
they have already applied. A message that failed for a reason that still holds will simply
come back to the DLQ, so fix the cause first (the reasons are in `datasync dlq <dest>`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from datasync.core.queues import ATTEMPT_ATTRIBUTE, SQS_BATCH_LIMIT, string_attributes

# Set by dead_letter() (and the attempt count of re-sent records); dropped on redrive, so a
# message that fails again gets fresh ones and its full number of attempts.
FAILURE_ATTRIBUTES = (
    "failure_reason", "failure_stage", "failed_at", "failure_receive_count", ATTEMPT_ATTRIBUTE,
)  # fmt: skip


def describe(message: dict[str, Any]) -> dict[str, Any]:
    attributes = string_attributes(message)
    described = {
        "message_id": message["MessageId"],
        "reason": attributes.get("failure_reason", "moved by the queue's redrive policy"),
        "stage": attributes.get("failure_stage"),
        "receive_count": attributes.get("failure_receive_count"),
        "event_id": attributes.get("event_id"),
        "correlation_id": attributes.get("correlation_id"),
        "sent_at": message.get("Attributes", {}).get("SentTimestamp"),
    }
    if "event_ids" in attributes:  # a whole pack (one that could not be read)
        described["records"] = attributes.get("record_count")
        described["event_ids"] = attributes["event_ids"].split(",")
        described["correlation_ids"] = attributes.get("correlation_ids", "").split(",")
    return described


def peek(sqs: Any, dlq_url: str) -> list[dict[str, Any]]:
    # VisibilityTimeout=0: look without hiding the messages from a redrive or from others.
    response = sqs.receive_message(
        QueueUrl=dlq_url, MaxNumberOfMessages=SQS_BATCH_LIMIT, VisibilityTimeout=0,
        MessageAttributeNames=["All"], AttributeNames=["All"],
    )  # fmt: skip
    return [describe(m) for m in response.get("Messages", [])]


def is_bus_event(body: str) -> bool:
    try:
        return isinstance(json.loads(body).get("detail"), dict)
    except (ValueError, AttributeError):
        return False


@dataclass
class RedriveReport:
    to_buffer: int = 0
    to_queue: int = 0
    failed: list[str] = field(default_factory=list)


def redrive(
    sqs: Any, dlq_url: str, *, buffer_url: str, queue_url: str, limit: int
) -> RedriveReport:
    """Move up to ``limit`` messages back; each is deleted from the DLQ only after it was sent."""
    report = RedriveReport()
    while report.to_buffer + report.to_queue + len(report.failed) < limit:
        messages = sqs.receive_message(
            QueueUrl=dlq_url, MaxNumberOfMessages=SQS_BATCH_LIMIT, VisibilityTimeout=60,
            MessageAttributeNames=["All"], WaitTimeSeconds=1,
        ).get("Messages", [])  # fmt: skip
        if not messages:
            break
        for message in messages:
            to_buffer = is_bus_event(message["Body"])
            attributes = {
                name: value
                for name, value in message.get("MessageAttributes", {}).items()
                if name not in FAILURE_ATTRIBUTES
            }
            try:
                sqs.send_message(
                    QueueUrl=buffer_url if to_buffer else queue_url,
                    MessageBody=message["Body"],
                    MessageAttributes=attributes,
                )
            except Exception:  # noqa: BLE001 - leave it in the DLQ, report, go on
                report.failed.append(message["MessageId"])
                continue
            sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
            if to_buffer:
                report.to_buffer += 1
            else:
                report.to_queue += 1
    return report
