"""The intake: one function shapes every live event for every destination, apart from Lambda.

The bus has one rule for live events, whose target is the intake queue; this processor takes
a batch from it and, for each destination, transforms the batch's events and sends them to
the destination queue in packs. That is one SQS delivery per event instead of one per
destination, and one invocation per batch instead of one per destination and batch: on AWS
$0.80 less per million events, and on the emulator about half the work per event
(BENCHMARKS.md, "One intake queue").

Anything off the fast path leaves it for that destination alone. A record that is poison,
whose transform failed, or whose pack the destination queue did not accept, is handed as it
came (the EventBridge event) to the destination's own buffer queue, where the destination's
own function (``TransformProcessor``) retries it with backoff or dead-letters it with the
reason, exactly as it handles a replayed event. The other destinations are not held back.
So is a record that failed in any other, unexpected way (its type and place are logged): one
record never fails the batch. Only when that hand-over itself fails is the record reported as
a batch item failure: it then comes back from the intake queue and every destination gets it
again, which the idempotent stores absorb.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from datasync.contract import AnyEvent, DestinationRecord
from datasync.core.queues import OutgoingMessage, SendError, send_batch, unexpected_error
from lambdas.processor import (
    BufferRecord,
    PoisonEvent,
    TransformFailed,
    event_from_eventbridge,
    send_packs,
    transform_safely,
)

logger = logging.getLogger("datasync.lambda")


@dataclass(frozen=True)
class Route:
    """One destination as the intake sees it."""

    destination: str
    transform: Callable[[AnyEvent], list[DestinationRecord]]
    queue_url: str  # the packs go here
    buffer_queue_url: str  # a record the fast path could not finish goes here


@dataclass
class _Outcome:
    events: dict[str, AnyEvent] = field(default_factory=dict)  # message id -> event
    handed_over: dict[str, dict[str, str]] = field(default_factory=dict)  # dest -> id -> why
    packs: int = 0


@dataclass
class IntakeProcessor:
    routes: list[Route]
    sqs: Any

    def handle_sqs_batch(self, raw: list[dict[str, Any]]) -> dict[str, list[dict[str, str]]]:
        records = [BufferRecord.parse(r) for r in raw]
        outcome = _Outcome(handed_over={route.destination: {} for route in self.routes})
        for record in records:
            try:
                outcome.events[record.message_id] = event_from_eventbridge(record.body)
            except PoisonEvent as exc:  # every destination's function dead-letters it
                self._hand_over_everywhere(record, outcome, str(exc))
            except Exception as exc:  # noqa: BLE001 - per-record isolation: it alone leaves
                reason = f"unexpected error: {unexpected_error(exc)}"
                logger.error("record failed", extra={"reason": reason})
                self._hand_over_everywhere(record, outcome, reason)
        for route in self.routes:
            self._shape(route, outcome)
        retry = self._hand_over(records, outcome.handed_over)
        self._log(records, outcome, retry)
        return {"batchItemFailures": [{"itemIdentifier": m} for m in sorted(retry)]}

    @staticmethod
    def _hand_over_everywhere(record: BufferRecord, outcome: _Outcome, reason: str) -> None:
        for reasons in outcome.handed_over.values():
            reasons[record.message_id] = reason

    def _shape(self, route: Route, outcome: _Outcome) -> None:
        """Transform the batch's events for one destination and send them packed."""
        transformed: list[tuple[DestinationRecord, str]] = []
        failed = outcome.handed_over[route.destination]
        for message_id, event in outcome.events.items():
            try:
                transformed += [(r, message_id) for r in transform_safely(route.transform, event)]
            except TransformFailed as exc:
                failed[message_id] = str(exc)
        packs, refused = send_packs(self.sqs, route.queue_url, transformed)
        outcome.packs += packs
        failed.update(refused)

    def _hand_over(
        self, records: list[BufferRecord], handed_over: dict[str, dict[str, str]]
    ) -> set[str]:
        """Send each record the fast path failed to the buffer queue of the destination(s) it
        failed for; the message ids that could not be handed over (to retry from the intake)."""
        bodies = {record.message_id: record.body for record in records}
        retry: set[str] = set()
        for route in self.routes:
            reasons = handed_over[route.destination]
            if not reasons:
                continue
            logger.warning(
                "handed over to the destination's own function",
                extra={"destination": route.destination, "count": len(reasons)},
            )
            outgoing = [OutgoingMessage(id=m, body=bodies[m], attributes={}) for m in reasons]
            try:
                send_batch(self.sqs, route.buffer_queue_url, outgoing)
            except SendError as exc:
                logger.error(
                    "could not hand over; retrying from the intake queue",
                    extra={"destination": route.destination, "reason": exc.reason},
                )
                retry.update(exc.failed_ids)
        return retry

    def _log(self, records: list[BufferRecord], outcome: _Outcome, retry: set[str]) -> None:
        # One line per batch for every destination (see TransformProcessor._log_batch).
        traces = {m: f"{e.event_id}/{e.correlation_id}" for m, e in outcome.events.items()}
        handed_over = {
            destination: [traces.get(m, m) for m in reasons]
            for destination, reasons in outcome.handed_over.items()
            if reasons
        }
        logger.info(
            "batch shaped",
            extra={
                "records": len(records),
                "packs": outcome.packs,
                "handed_over": {d: len(ids) for d, ids in handed_over.items()},
                "retry": len(retry),
                "events": {
                    "received": list(traces.values()),
                    **({"handed_over": handed_over} if handed_over else {}),
                    **({"retry": [traces.get(m, m) for m in sorted(retry)]} if retry else {}),
                },
            },
        )
