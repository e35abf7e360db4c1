"""What a destination's Lambda does, apart from the Lambda runtime (so tests use fakes).

Input is either a batch of SQS records from the buffer queue (the deployed topology: the
EventBridge rule targets a buffer queue and an event source mapping hands us up to 100
events at once) or a single EventBridge event (an asynchronous invocation).

Failure handling:
- a poison event (not JSON, not our contract) is never retried: it goes to the
  destination's DLQ with the validation errors as the reason;
- a transient failure (the destination queue refused a send) is reported back so that the
  record is retried (batch item failure / raise for async), and on its last allowed
  delivery it is moved to the DLQ with the reason instead of silently by the redrive.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from datasync.contract import AnyEvent, DestinationRecord, parse_event
from datasync.core.logging import log_context
from datasync.core.queues import (
    OutgoingMessage,
    SendError,
    dead_letter,
    is_last_attempt,
    send_batch,
)

logger = logging.getLogger("datasync.lambda")


class PoisonEvent(ValueError):
    """The input can never be processed; the message says why (without personal data)."""


def describe_validation_error(exc: ValidationError) -> str:
    # include_input=False: the reason lands in a DLQ and in logs, and inputs carry PII.
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
        for err in exc.errors(include_input=False, include_url=False)
    ]
    return "invalid event: " + "; ".join(parts)


def event_from_eventbridge(envelope: Any) -> AnyEvent:
    """The business event inside an EventBridge event (dict or JSON text)."""
    try:
        if isinstance(envelope, str | bytes):
            envelope = json.loads(envelope)
        detail = envelope["detail"]
        return parse_event(detail)
    except ValidationError as exc:
        raise PoisonEvent(describe_validation_error(exc)) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise PoisonEvent(
            f"not an EventBridge event with a JSON detail ({type(exc).__name__})"
        ) from None


@dataclass
class TransformProcessor:
    destination: str
    transform: Callable[[AnyEvent], list[DestinationRecord]]
    sqs: Any
    destination_queue_url: str
    dead_letter_queue_url: str
    max_receive_count: int

    # -- SQS batch (event source mapping) ---------------------------------------------------
    def handle_sqs_batch(self, records: list[dict[str, Any]]) -> dict[str, list[dict[str, str]]]:
        outgoing: list[OutgoingMessage] = []
        message_of: dict[str, str] = {}  # outgoing id -> SQS message id
        unsent: set[str] = set()  # SQS message ids to retry
        traced: list[str] = []
        for record in records:
            message_id = record["messageId"]
            try:
                event = event_from_eventbridge(record["body"])
            except PoisonEvent as exc:
                if not self._try_dead_letter(record["body"], str(exc)):
                    unsent.add(message_id)
                continue
            with log_context(correlation_id=event.correlation_id, event_id=str(event.event_id)):
                for index, out in enumerate(self.transform(event)):
                    out_id = f"{message_id}:{index}"
                    outgoing.append(_outgoing(out_id, out))
                    message_of[out_id] = message_id
                logger.debug("transformed", extra={"event_type": event.event_type})
            traced.append(f"{event.event_id}/{event.correlation_id}")
        failed_messages = self._send(outgoing, message_of) | unsent
        retry = self._retry_or_dead_letter(records, failed_messages)
        # One line per batch, not per event: Lambda log ingestion is billed per GB, and a
        # per-event line would cost about as much as the events themselves. The ids keep
        # every event traceable by event id or correlation id.
        logger.info(
            "batch transformed",
            extra={
                "records": len(records),
                "sent": len(outgoing),
                "retry": len(retry),
                "events": traced,
            },
        )
        return {"batchItemFailures": retry}

    def _send(self, outgoing: list[OutgoingMessage], message_of: dict[str, str]) -> set[str]:
        try:
            send_batch(self.sqs, self.destination_queue_url, outgoing)
        except SendError as exc:
            logger.warning(
                "destination queue refused messages", extra={"count": len(exc.failed_ids)}
            )
            return {message_of[i] for i in exc.failed_ids}
        return set()

    def _retry_or_dead_letter(self, records, failed_messages: set[str]) -> list[dict[str, str]]:
        retry = []
        for record in records:
            if record["messageId"] not in failed_messages:
                continue
            last = is_last_attempt(record, self.max_receive_count)
            reason = "could not be handed to the destination queue on any attempt"
            if not (last and self._try_dead_letter(record["body"], reason)):
                retry.append({"itemIdentifier": record["messageId"]})
        return retry

    # -- single EventBridge event (asynchronous invocation) ---------------------------------
    def handle_eventbridge_event(self, envelope: dict[str, Any]) -> dict[str, Any]:
        try:
            event = event_from_eventbridge(envelope)
        except PoisonEvent as exc:
            self._dead_letter(json.dumps(envelope), str(exc), stage="transform")
            return {"status": "dead-lettered"}
        with log_context(correlation_id=event.correlation_id, event_id=str(event.event_id)):
            outgoing = [_outgoing(str(i), r) for i, r in enumerate(self.transform(event))]
            # SendError propagates: Lambda retries the async invocation, then the
            # on-failure destination (the DLQ) receives it with the error.
            send_batch(self.sqs, self.destination_queue_url, outgoing)
            logger.info("transformed", extra={"event_type": event.event_type})
        return {"status": "sent", "records": len(outgoing)}

    def _try_dead_letter(self, body: str, reason: str) -> bool:
        try:
            self._dead_letter(body, reason, stage="transform")
        except (BotoCoreError, ClientError):
            logger.exception("could not dead-letter; the record will be retried")
            return False
        return True

    def _dead_letter(self, body: str, reason: str, *, stage: str) -> None:
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
        )


def _trace_ids(body: str) -> dict[str, str]:
    """Best effort: the event and correlation ids of a (possibly invalid) event, for tracing."""
    try:
        detail = json.loads(body).get("detail", {})
        ids = {name: detail.get(name) for name in ("event_id", "correlation_id")}
    except (ValueError, AttributeError):
        return {}
    return {k: v[:128] for k, v in ids.items() if isinstance(v, str) and v}


def _outgoing(out_id: str, record: DestinationRecord) -> OutgoingMessage:
    return OutgoingMessage(
        id=out_id, body=record.model_dump_json(), attributes=record.message_attributes()
    )
