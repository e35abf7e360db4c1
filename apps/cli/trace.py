"""`datasync trace <event_id | user_id | correlation_id>`: where an event is.

It gathers what each hop knows, from the places an operator can read without changing
anything: the API's log lines of the local run (accepted: event id and correlation id), the
consumers' batch lines, the stores (their applied-events tables keep every event id; the
records of a user name the events that set their fields), the DLQs (read in full, then made
visible again), and a peek at the intake, buffer and destination queues. The peek is **best
effort**: one receive of up to 10 messages per queue with a visibility timeout of 0, so a long queue
may hide the event, a consumer may take it meanwhile, and the receive counts towards the
queue's maxReceiveCount like any other (`--no-peek` skips it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from apps.cli import common
from apps.cli.dlq import list_messages
from datasync.contract import DESTINATIONS
from datasync.core import exit_codes
from datasync.core.queues import SQS_BATCH_LIMIT, string_attributes
from datasync.core.stores import StoreNotReady
from datasync.settings import Settings

COLUMNS = ("where", "destination", "event_id", "correlation_id", "detail")
EXAMPLES = """\
examples:
  datasync trace 6f1c2b9e-3d4a-4f5b-8c7d-9e0a1b2c3d4e   # an event id (from the API's answer)
  datasync trace 0b9f5f7e-1c2d-4e3f-9a8b-7c6d5e4f3a2b   # a user id: the events of their records
  datasync trace req-7a1f0c --json                       # a correlation id (X-Correlation-ID)

Exit 3 when the id is found nowhere. Accepted events are found in the local API log
(`make run`); on AWS, look them up in CloudWatch Logs by correlation id.
"""


def register(commands: Any) -> None:
    trace = commands.add_parser(
        "trace",
        help="where an event is: accepted, waiting, applied, dead-lettered",
        epilog=EXAMPLES,
    )
    trace.add_argument("id", help="an event id, a user id or a correlation id")
    trace.add_argument("--json", action="store_true", help="JSON instead of a table")
    trace.add_argument(
        "--no-peek", action="store_true", help="do not peek at the buffer and destination queues"
    )
    trace.set_defaults(func=cmd_trace)


class Trace:
    """What is known about one id, hop by hop; event and correlation ids found on the way
    widen the search (a correlation id names events, an event carries a correlation id)."""

    def __init__(self, wanted: str):
        self.wanted = wanted
        self.event_ids: set[str] = set()
        self.correlation_ids: set[str] = set()
        self.user_id: str | None = None
        self.rows: list[dict[str, Any]] = []

    def knows(self, event_id: str | None, correlation_id: str | None) -> bool:
        return self.wanted in (event_id, correlation_id) or bool(
            (event_id and event_id in self.event_ids)
            or (correlation_id and correlation_id in self.correlation_ids)
        )

    def learn(self, event_id: str | None, correlation_id: str | None) -> None:
        if event_id:
            self.event_ids.add(event_id)
        if correlation_id:
            self.correlation_ids.add(correlation_id)

    def add(
        self,
        where: str,
        destination: str | None,
        event_id: str | None,
        correlation_id: str | None,
        detail: str,
    ) -> None:
        row = {
            "where": where,
            "destination": destination,
            "event_id": event_id,
            "correlation_id": correlation_id,
            "detail": detail,
        }
        if row not in self.rows:
            self.rows.append(row)

    @property
    def needles(self) -> set[str]:
        return {self.wanted} | self.event_ids | self.correlation_ids

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.wanted,
            "user_id": self.user_id,
            "event_ids": sorted(self.event_ids),
            "correlation_ids": sorted(self.correlation_ids),
            "found": self.rows,
        }


def from_logs(trace: Trace, logs_dir: Path) -> None:
    """The API's request lines (accepted) and the consumers' batch lines (what they did)."""
    api_log = logs_dir / "api.log"
    for fields in _json_lines(api_log, trace.needles):
        if trace.knows(fields.get("event_id"), fields.get("correlation_id")):
            trace.learn(fields.get("event_id"), fields.get("correlation_id"))
            trace.add(
                "accepted (API log)" if fields.get("status") == 202 else "API request",
                None,
                fields.get("event_id"),
                fields.get("correlation_id"),
                f"{fields.get('status')} {fields.get('method')} {fields.get('route')} "
                f"at {fields.get('time')}",
            )
    for path in sorted(logs_dir.glob("consumer-*.log")):
        for fields in _json_lines(path, trace.needles):
            for traced in (fields.get("events") or {}).values():
                for pair in traced:
                    event_id, _, correlation_id = pair.partition("/")
                    if trace.knows(event_id, correlation_id):
                        trace.learn(event_id, correlation_id)


def _json_lines(path: Path, needles: set[str]) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    found = []
    with path.open(errors="replace") as lines:
        for line in lines:
            if any(needle in line for needle in needles):  # most lines are about other events
                try:
                    fields = json.loads(line)
                except ValueError:
                    continue
                if isinstance(fields, dict):
                    found.append(fields)
    return found


def user_events(trace: Trace, settings: Settings) -> None:
    """If the id is a user's: the events their records name."""

    def read(destination: str, store: Any) -> None:
        for event_id in _events_of_user(store, settings, trace.wanted):
            trace.user_id = trace.wanted
            trace.learn(event_id, None)

    _read_each_store(settings, read)


def applied(trace: Trace, settings: Settings) -> None:
    def read(destination: str, store: Any) -> None:
        for event_id in sorted(trace.event_ids | {trace.wanted}):
            applied_at = store.applied_at(event_id)
            if applied_at:
                trace.learn(event_id, None)
                trace.add("applied", destination, event_id, None, f"at {applied_at}")

    _read_each_store(settings, read)


def _read_each_store(settings: Settings, read: Callable[[str, Any], None]) -> None:
    """``read`` each destination's store; one that cannot be read is said and skipped, so the
    trace still shows every other hop."""
    for destination in DESTINATIONS:
        try:
            store = common.open_destination_store(settings, destination)
            try:
                read(destination, store)
            finally:
                store.close()
        except StoreNotReady as exc:
            print(f"datasync: trace: skipping the {destination} store: {exc}", file=sys.stderr)


def _events_of_user(store: Any, settings: Settings, user_id: str) -> set[str]:
    """The event ids a store's record of this user names (the last to set each field)."""
    if store.kind == "log":
        if settings.analytics_hash_key is None:
            return set()
        from datasync.core.transforms import pseudonym

        subject = pseudonym(user_id, settings.analytics_hash_key.get_secret_value().encode())
        return {event["event_id"] for event in (store.get(subject) or {}).get("events", [])}
    state = store.state(user_id)
    if state is None:
        return set()
    versions = [*state.versions.values(), state.deleted_version]
    return {v.split("#", 1)[1] for v in versions if v and "#" in v}


def from_queues(trace: Trace, settings: Settings, peek: bool) -> None:
    sqs = common.sqs(settings)
    # The intake comes first: every live event passes it before any destination's queues.
    intake = {"dlq": settings.intake_dlq_url, "buffer_queue": settings.intake_queue_url}
    for destination, urls in [("intake", intake), *((d, None) for d in DESTINATIONS)]:
        dlq_url = urls["dlq"] if urls else settings.dlq_url_for(destination)
        if dlq_url:
            for entry in list_messages(sqs, dlq_url, limit=10_000):
                for event_id, correlation_id in _pairs(entry):
                    if trace.knows(event_id, correlation_id):
                        trace.learn(event_id, correlation_id)
                        trace.add(
                            "dead-lettered",
                            destination,
                            event_id,
                            correlation_id,
                            f"{entry['reason']} (stage {entry['stage']})",
                        )
        if not peek:
            continue
        for kind, where in (
            ("buffer_queue", f"waiting: {'intake' if urls else 'buffer'} queue"),
            ("queue", "waiting: destination queue"),
        ):
            if urls:
                url = urls.get(kind)
            else:
                url = settings.destination_queue_url(destination, kind)
            if not url:
                continue
            messages = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=SQS_BATCH_LIMIT,
                VisibilityTimeout=0,
                # 0: the queues long-poll by default, and a peek must not wait 20 s per queue.
                WaitTimeSeconds=0,
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            for message in messages:
                for event_id, correlation_id in _message_pairs(message):
                    if trace.knows(event_id, correlation_id):
                        trace.add(where, destination, event_id, correlation_id, "best effort")


def _pairs(entry: dict[str, Any]) -> list[tuple[str | None, str | None]]:
    if "event_ids" in entry:
        return list(zip(entry["event_ids"], entry.get("correlation_ids") or [], strict=False))
    return [(entry.get("event_id"), entry.get("correlation_id"))]


def _message_pairs(message: dict[str, Any]) -> list[tuple[str | None, str | None]]:
    """(event id, correlation id) of a record, a pack (attributes) or a bus event (body)."""
    attributes = string_attributes(message)
    if "event_ids" in attributes:
        return list(
            zip(
                attributes["event_ids"].split(","),
                attributes.get("correlation_ids", "").split(","),
                strict=False,
            )
        )
    if "event_id" in attributes:
        return [(attributes["event_id"], attributes.get("correlation_id"))]
    try:
        detail = json.loads(message["Body"]).get("detail") or {}
    except (ValueError, AttributeError):
        return []
    return [(detail.get("event_id"), detail.get("correlation_id"))]


def collect(wanted: str, settings: Settings, logs_dir: Path, peek: bool = True) -> Trace:
    trace = Trace(wanted)
    from_logs(trace, logs_dir)
    user_events(trace, settings)
    from_logs(trace, logs_dir)  # the events a user's records named, as the API accepted them
    applied(trace, settings)
    from_queues(trace, settings, peek)
    return trace


def cmd_trace(args: argparse.Namespace) -> int:
    settings = common.settings()
    trace = collect(args.id, settings, settings.logs_dir, not args.no_peek)
    if args.json:
        common.print_json(trace.as_dict())
    elif trace.rows:
        common.table(trace.rows, COLUMNS)
    if not trace.rows:
        print(
            f"datasync: {args.id} found nowhere: not in the API log, the stores, the DLQs, "
            "nor (best effort) the queues",
            file=sys.stderr,
        )
        return exit_codes.ABSENT
    return exit_codes.OK
