"""`datasync replay`: events of a time window, from the bus archive back onto the bus.

Safe to repeat: the stores ignore event ids they have already applied, so a replayed event
that reached its store the first time changes nothing (the consumers log it as a duplicate).

Restricting it: EventBridge's StartReplay filters by *rule* only (``Destination.FilterArns``),
so ``--destination`` passes the rules that feed those destinations' buffer queues (found on
the bus by their target). It has no event pattern, so it cannot filter by event type, and
``--event-type`` is refused with that explanation rather than silently replaying everything.
MiniStack (1.5.33) accepts FilterArns but ignores them: locally a replay reaches every
destination, and the others only count duplicates.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from apps.cli import common
from datasync.contract import DESTINATIONS
from datasync.core import exit_codes
from datasync.settings import ConfigError, Settings

EXAMPLES = """\
examples:
  datasync replay --minutes 30                          # the last 30 minutes, every destination
  datasync replay --from 2026-12-01T09:00:00Z --to 2026-12-01T10:00:00Z --destination crm
  datasync replay --from 2026-12-01T09:00+01:00 --destination crm --destination marketing

Times are ISO 8601 with a zone (Z or +01:00). The stores ignore events they already applied,
so a replay re-applies nothing twice. --destination uses the replay's rule filter
(FilterArns); MiniStack ignores it, so locally every destination sees the replay (and ignores
what it applied). Replays cannot be filtered by event type (StartReplay has no event pattern).
"""
FINISHED = ("COMPLETED", "FAILED", "CANCELLED")


def register(commands: Any) -> None:
    replay = commands.add_parser(
        "replay",
        help="replay archived events onto the bus (safe: the stores dedupe)",
        epilog=EXAMPLES,
    )
    replay.add_argument(
        "--from",
        "--since",
        dest="start",
        type=_moment,
        help="start, ISO 8601 with zone (default: --minutes before --to)",
    )
    replay.add_argument("--to", dest="end", type=_moment, help="end (default: now)")
    replay.add_argument("--minutes", type=int, default=60, help="without --from: the last N min")
    replay.add_argument(
        "--destination",
        action="append",
        choices=DESTINATIONS,
        help="only to this destination (repeatable; default: all)",
    )
    replay.add_argument(
        "--event-type",
        action="append",
        help="not supported by EventBridge replays: refused with the reason",
    )
    replay.add_argument("--timeout", type=int, default=300, help="seconds to wait for completion")
    replay.set_defaults(func=cmd_replay)


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no zone: add Z (UTC) or +HH:MM")
    return moment


def destination_rules(settings: Settings, destinations: list[str]) -> dict[str, str]:
    """{destination: ARN of the bus rule whose target is its buffer queue}."""
    sqs, events = common.sqs(settings), common.aws("events", settings)
    wanted = {}
    for destination in destinations:
        url = settings.buffer_queue_url_for(destination)
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
        wanted[arn["QueueArn"]] = destination
    found: dict[str, str] = {}
    paginator = events.get_paginator("list_rules")
    for page in paginator.paginate(EventBusName=settings.event_bus_name):
        for rule in page["Rules"]:
            targets = events.list_targets_by_rule(
                Rule=rule["Name"], EventBusName=settings.event_bus_name
            )
            for target in targets["Targets"]:
                if target["Arn"] in wanted:
                    found[wanted[target["Arn"]]] = rule["Arn"]
    missing = sorted(set(destinations) - set(found))
    if missing:
        raise ConfigError(
            f"no rule on bus {settings.event_bus_name} targets the buffer queue of "
            f"{', '.join(missing)}: is DATASYNC_EVENT_BUS_NAME right?"
        )
    return found


def cmd_replay(args: argparse.Namespace) -> int:
    if args.event_type:
        raise ConfigError(
            "--event-type: an EventBridge replay cannot be limited to event types (StartReplay "
            "filters by rule only, and the destinations' rules take every event type). Replay "
            "the window without it: the stores ignore events they already applied."
        )
    settings = common.settings()
    if not (settings.archive_arn and settings.event_bus_arn):
        raise ConfigError(
            "replay needs DATASYNC_ARCHIVE_ARN and DATASYNC_EVENT_BUS_ARN "
            "(Terraform outputs archive_arn and event_bus_arn; `make run` sets them)"
        )
    end = args.end or datetime.now(UTC)
    start = args.start or end - timedelta(minutes=args.minutes)
    if start >= end:
        raise ConfigError(f"--from ({start.isoformat()}) must be before --to ({end.isoformat()})")
    destination: dict[str, Any] = {"Arn": settings.event_bus_arn}
    rules = destination_rules(settings, args.destination) if args.destination else {}
    if rules:
        destination["FilterArns"] = sorted(rules.values())
    events = common.aws("events", settings)
    name = f"datasync-replay-{uuid.uuid4().hex[:12]}"
    events.start_replay(
        ReplayName=name,
        EventSourceArn=settings.archive_arn,
        EventStartTime=start,
        EventEndTime=end,
        Destination=destination,
    )
    scope = ", ".join(sorted(rules)) or "every destination"
    print(f"replay {name}: {start.isoformat()} .. {end.isoformat()} to {scope}", flush=True)
    state = _wait(events, name, start, end, args.timeout)
    common.print_json(
        {
            "replay": name,
            "state": state.get("State"),
            "reason": state.get("StateReason"),
            "destinations": sorted(rules) or None,
            "filter_arns": destination.get("FilterArns"),
        }
    )
    if state.get("State") not in FINISHED:
        print(
            f"datasync: replay {name} still running after {args.timeout}s; "
            "`aws events describe-replay` follows it",
            file=sys.stderr,
        )
    return exit_codes.OK if state.get("State") == "COMPLETED" else exit_codes.FAILED


def _wait(events: Any, name: str, start: datetime, end: datetime, timeout: int) -> dict[str, Any]:
    """Poll the replay, showing how far into the window it is (EventLastReplayedTime; an
    emulator that does not report it shows only the state)."""
    window = (end - start).total_seconds()
    deadline = time.monotonic() + timeout
    with common.progress(f"replay {name}", 100) as bar:
        while True:
            state = events.describe_replay(ReplayName=name)
            last = state.get("EventLastReplayedTime")
            done = (
                100
                if state["State"] == "COMPLETED"
                else (int(100 * (last - start).total_seconds() / window) if last else 0)
            )
            bar.update(max(0, min(100, done) - bar.done), state=state["State"])
            if state["State"] in FINISHED or time.monotonic() >= deadline:
                return state
            time.sleep(1)
