"""What a destination's Lambda does, apart from the Lambda runtime (so tests use fakes).

Input is either a batch of SQS records from the destination's buffer queue (what the intake,
``lambdas/intake.py``, handed over, and replayed events, which the destination's own rule
routes there; an event source mapping hands us a batch at once) or a single EventBridge event
(an asynchronous invocation). The intake reuses ``transform_safely`` and ``send_packs``.

Every record of a batch has its own outcome; the batch as a whole never fails (the model is
aws-lambda-powertools' batch processing: typed records, per-record failure isolation,
``batchItemFailures``):
- poison (not JSON, nested too deep, not our contract, an event time ahead of the clock) is
  never retried: it goes to the destination's DLQ at once with the validation errors as the
  reason;
- an unexpected error in the transform, or a destination queue that refuses the record or
  cannot be reached, fails that record alone: it is reported as a batch item failure, made
  visible again after a backoff, and on its last allowed delivery it is moved to the DLQ with
  the reason (exception type and message, personal values cut out) instead of silently by
  the redrive policy. So does any other unexpected error with one record (its type and place
  as the reason): it never fails the batch.
The records that transformed travel together: one record pack (``datasync.contract``) per
invocation, split only when it would outgrow an SQS message, so the destination queue holds one
message per batch instead of one per record. If a pack is not accepted, the records it carried
fail (batch item failures) and come back. That is why this is not powertools' BatchProcessor
itself: it hands records to a handler one at a time, and each would need a message of its own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError
from pydantic_core import from_json

from datasync.contract import (
    AnyEvent,
    DestinationRecord,
    RecordPack,
    pack_records,
    parse_event,
)
from datasync.core.logging import log_context
from datasync.core.queues import (
    SQS_BATCH_LIMIT,
    OutgoingMessage,
    SendError,
    dead_letter,
    error_code,
    failure_reason,
    receive_count,
    retry_delay,
    send_batch,
    string_values,
    unexpected_error,
    validation_problems,
)

logger = logging.getLogger("datasync.lambda")


class PoisonEvent(ValueError):
    """The input can never be processed; the message says why (without personal data)."""


class TransformFailed(RuntimeError):
    """An unexpected error in a transform, with a reason that carries no personal data."""


def describe_validation_error(exc: ValidationError) -> str:
    return "invalid event: " + validation_problems(exc)


def event_from_eventbridge(envelope: Any) -> AnyEvent:
    """The business event inside an EventBridge event (dict or JSON text).

    Raises PoisonEvent, and only that, for any text that is not one: pydantic's JSON parser
    refuses a nesting the standard library would meet with RecursionError."""
    try:
        if isinstance(envelope, str | bytes):
            envelope = from_json(envelope)
        detail = envelope["detail"]
        return parse_event(detail)
    except ValidationError as exc:
        raise PoisonEvent(describe_validation_error(exc)) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise PoisonEvent(
            f"not an EventBridge event with a JSON detail ({type(exc).__name__})"
        ) from None


@dataclass(frozen=True)
class BufferRecord:
    """One SQS record of an event source mapping batch, typed."""

    message_id: str
    body: str
    receive_count: int
    receipt_handle: str | None = None
    source_arn: str | None = None

    @classmethod
    def parse(cls, record: dict[str, Any]) -> BufferRecord:
        return cls(
            message_id=record["messageId"],
            body=record["body"],
            receive_count=receive_count(record),
            receipt_handle=record.get("receiptHandle"),
            source_arn=record.get("eventSourceARN"),
        )


@dataclass
class _Batch:
    """What one invocation's records came to, by SQS message id."""

    # Transformed records, each with the SQS message id of the event it came from.
    transformed: list[tuple[DestinationRecord, str]] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # -> why it failed (retry or DLQ)
    traces: dict[str, str] = field(default_factory=dict)  # -> "event_id/correlation_id"
    dead_lettered: list[str] = field(default_factory=list)
    packs: int = 0


@dataclass
class TransformProcessor:
    destination: str
    transform: Callable[[AnyEvent], list[DestinationRecord]]
    sqs: Any
    destination_queue_url: str
    dead_letter_queue_url: str
    max_receive_count: int
    # Where failed records are made visible again after a backoff; None: derived from the
    # records' eventSourceARN (the buffer queue lives beside the destination queue).
    buffer_queue_url: str | None = None

    # -- SQS batch (event source mapping) ---------------------------------------------------
    def handle_sqs_batch(self, raw: list[dict[str, Any]]) -> dict[str, list[dict[str, str]]]:
        records = [BufferRecord.parse(r) for r in raw]
        batch = _Batch()
        for record in records:
            try:
                self._take(record, batch)
            except Exception as exc:  # noqa: BLE001 - per-record isolation: it alone fails
                reason = f"unexpected error: {unexpected_error(exc)}"
                logger.error("record failed", extra={"reason": reason})
                batch.failures[record.message_id] = reason
        batch.failures.update(self._send_packs(batch))
        retry, given_up = self._retry_or_dead_letter(records, batch.failures)
        batch.dead_lettered += given_up
        self._back_off([r for r in records if r.message_id in retry])
        self._log_batch(len(records), batch, retry)
        return {"batchItemFailures": [{"itemIdentifier": m} for m in retry]}

    def _take(self, record: BufferRecord, batch: _Batch) -> None:
        """Parse and transform one record: its messages join the batch, or it failed alone."""
        try:
            event = event_from_eventbridge(record.body)
        except PoisonEvent as exc:
            if self._try_dead_letter(record, str(exc)):
                batch.dead_lettered.append(record.message_id)
            else:  # the DLQ did not take it: retry, and dead-letter it later
                batch.failures[record.message_id] = str(exc)
            return
        batch.traces[record.message_id] = f"{event.event_id}/{event.correlation_id}"
        try:
            transformed = self._transform(event)
        except TransformFailed as exc:
            with log_context(correlation_id=event.correlation_id, event_id=str(event.event_id)):
                logger.warning("transform failed", extra={"reason": str(exc)})
            batch.failures[record.message_id] = str(exc)
            return
        batch.transformed += [(out, record.message_id) for out in transformed]

    def _log_batch(self, records: int, batch: _Batch, retry: list[str]) -> None:
        # One line per batch, not per event: Lambda log ingestion is billed per GB, and a
        # per-event line would cost about as much as the events themselves. The ids keep
        # every event traceable by event id or correlation id; a failure has a line of its own.
        sent = [t for m, t in batch.traces.items() if m not in batch.failures]
        by_outcome = {
            "sent": sent,
            "retry": [batch.traces.get(m, m) for m in retry],
            "dead_lettered": [batch.traces.get(m, m) for m in batch.dead_lettered],
        }
        logger.info(
            "batch transformed",
            extra={
                "records": records,
                "sent": len(sent),
                "packs": batch.packs,
                "retry": len(retry),
                "dead_lettered": len(batch.dead_lettered),
                "events": {outcome: ids for outcome, ids in by_outcome.items() if ids},
            },
        )

    def _transform(self, event: AnyEvent) -> list[DestinationRecord]:
        return transform_safely(self.transform, event)

    def _send_packs(self, batch: _Batch) -> dict[str, str]:
        """Send what was transformed, packed; the SQS message ids whose records were not
        accepted, with the reason."""
        batch.packs, failures = send_packs(self.sqs, self.destination_queue_url, batch.transformed)
        return failures

    def _retry_or_dead_letter(
        self, records: list[BufferRecord], failures: dict[str, str]
    ) -> tuple[list[str], list[str]]:
        """(message ids to retry, message ids dead-lettered on their last attempt)."""
        retry, dead = [], []
        for record in records:
            reason = failures.get(record.message_id)
            if reason is None:
                continue
            last = record.receive_count >= self.max_receive_count
            if last and self._try_dead_letter(record, reason):
                dead.append(record.message_id)
            else:
                retry.append(record.message_id)
        return retry, dead

    def _back_off(self, records: list[BufferRecord]) -> None:
        """Make failed records visible again after 2, 4, 8 ... s instead of the queue's
        visibility timeout (six times the function timeout: minutes)."""
        entries = [
            {
                "Id": str(i),
                "ReceiptHandle": r.receipt_handle,
                "VisibilityTimeout": retry_delay(r.receive_count),
            }
            for i, r in enumerate(records)
            if r.receipt_handle
        ]
        queue_url = self._buffer_queue_url(records)
        if not entries or queue_url is None:
            return
        try:
            for start in range(0, len(entries), SQS_BATCH_LIMIT):
                self.sqs.change_message_visibility_batch(
                    QueueUrl=queue_url, Entries=entries[start : start + SQS_BATCH_LIMIT]
                )
        except (BotoCoreError, ClientError) as exc:
            # Not fatal: the records still come back, after the queue's visibility timeout.
            logger.warning("could not back off failed records", extra={"error": error_code(exc)})

    def _buffer_queue_url(self, records: list[BufferRecord]) -> str | None:
        if self.buffer_queue_url:
            return self.buffer_queue_url
        arn = next((r.source_arn for r in records if r.source_arn), None)
        if arn is None:
            return None
        # Same account and region as the destination queue (one Terraform module makes both),
        # so its URL differs only in the queue name: no GetQueueUrl call or permission needed.
        return f"{self.destination_queue_url.rsplit('/', 1)[0]}/{arn.rsplit(':', 1)[1]}"

    # -- single EventBridge event (asynchronous invocation) ---------------------------------
    def handle_eventbridge_event(self, envelope: dict[str, Any]) -> dict[str, Any]:
        try:
            event = event_from_eventbridge(envelope)
        except PoisonEvent as exc:
            self._dead_letter(json.dumps(envelope), str(exc), stage="transform")
            return {"status": "dead-lettered"}
        with log_context(correlation_id=event.correlation_id, event_id=str(event.event_id)):
            # TransformFailed and SendError propagate: Lambda retries the async invocation,
            # then the on-failure destination (the DLQ) receives it with the error's message.
            records = self._transform(event)
            outgoing = [_outgoing(str(i), p) for i, p in enumerate(pack_records(records))]
            send_batch(self.sqs, self.destination_queue_url, outgoing)
            logger.info("transformed", extra={"event_type": event.event_type})
        return {"status": "sent", "records": len(records)}

    def _try_dead_letter(self, record: BufferRecord, reason: str) -> bool:
        try:
            self._dead_letter(
                record.body, reason, stage="transform", receive_count=record.receive_count
            )
        except (BotoCoreError, ClientError):
            logger.exception("could not dead-letter; the record will be retried")
            return False
        return True

    def _dead_letter(
        self, body: str, reason: str, *, stage: str, receive_count: int | None = None
    ) -> None:
        trace = _trace_ids(body)
        with log_context(**trace):
            logger.error("dead-lettered", extra={"reason": reason, "stage": stage})
        attributes = {k: {"DataType": "String", "StringValue": v} for k, v in trace.items()}
        dead_letter(
            self.sqs,
            self.dead_letter_queue_url,
            body,
            reason=reason,
            stage=stage,
            attributes=attributes,
            receive_count=receive_count,
        )


def transform_safely(
    transform: Callable[[AnyEvent], list[DestinationRecord]], event: AnyEvent
) -> list[DestinationRecord]:
    """The transform's records, or TransformFailed with a reason free of personal data."""
    try:
        return transform(event)
    except Exception as exc:  # noqa: BLE001 - a bug or bad data fails this record only
        personal = string_values(event.data.model_dump(mode="json"))
        raise TransformFailed(f"transform failed: {failure_reason(exc, personal)}") from exc


def send_packs(
    sqs: Any, queue_url: str, transformed: list[tuple[DestinationRecord, str]]
) -> tuple[int, dict[str, str]]:
    """Send transformed records (each with the SQS message id it came from) in packs.

    Returns the packs accepted, and the message ids whose records were not, with the reason."""
    outgoing, owners, start = [], {}, 0
    for index, pack in enumerate(pack_records([record for record, _ in transformed])):
        outgoing.append(_outgoing(f"pack-{index}", pack))
        end = start + len(pack.records)
        owners[f"pack-{index}"] = {owner for _, owner in transformed[start:end]}
        start = end
    try:
        send_batch(sqs, queue_url, outgoing)
    except SendError as exc:
        logger.warning(
            "destination queue refused messages",
            extra={"count": len(exc.failed_ids), "reason": exc.reason},
        )
        reason = f"not accepted by the destination queue: {exc.reason}"
        failures = {owner: reason for i in exc.failed_ids for owner in owners[i]}
        return len(outgoing) - len(exc.failed_ids), failures
    return len(outgoing), {}


def _trace_ids(body: str) -> dict[str, str]:
    """Best effort: the event and correlation ids of a (possibly invalid) event, for tracing."""
    try:
        detail = from_json(body).get("detail", {})
        ids = {name: detail.get(name) for name in ("event_id", "correlation_id")}
    except (ValueError, AttributeError):  # not JSON, too deep, not an object
        return {}
    return {k: v[:128] for k, v in ids.items() if isinstance(v, str) and v}


def _outgoing(out_id: str, pack: RecordPack) -> OutgoingMessage:
    return OutgoingMessage(
        id=out_id, body=pack.model_dump_json(), attributes=pack.message_attributes()
    )
