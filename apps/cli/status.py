"""`datasync status`: per destination, what waits where, what was applied, and which alarm
CloudWatch would raise."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from apps.cli import common
from datasync.contract import DESTINATIONS
from datasync.core import exit_codes
from datasync.core.queues import queue_depth
from datasync.core.stores import StoreNotReady
from datasync.settings import Settings

# The defaults of terraform/variables.tf (oldest_message_alarm_seconds,
# buffer_oldest_message_alarm_seconds), in one place for Python; a unit test reads the .tf
# file and fails when they drift apart. A deployment that overrides them should say so with
# DATASYNC_* settings one day; until then `datasync status` judges by the defaults.
OLDEST_MESSAGE_ALARM_SECONDS = {"queue": 900, "buffer": 600}
# The alarms look at the last periods (alarm_period_seconds 60 x alarm_evaluation_periods 5).
ALARM_WINDOW = timedelta(minutes=5)

EXAMPLES = """\
examples:
  datasync status           # a table per destination, with ALARM where CloudWatch would fire
  datasync status --json    # the same numbers for scripts

ALARM when the DLQ holds a message, or when the oldest message of the buffer queue is older
than 600 s or of the destination queue older than 900 s (the Terraform defaults). The age comes
from CloudWatch's ApproximateAgeOfOldestMessage; MiniStack does not publish it, so locally only
the DLQ condition can fire.
"""


def register(commands: Any) -> None:
    status = commands.add_parser(
        "status",
        help="queues, DLQs, applied events and alarm conditions per destination",
        epilog=EXAMPLES,
    )
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)


def oldest_message_age(cloudwatch: Any, queue_url: str) -> float | None:
    """CloudWatch's ApproximateAgeOfOldestMessage (maximum over the alarm window), if any."""
    now = datetime.now(UTC)
    points = cloudwatch.get_metric_statistics(
        Namespace="AWS/SQS",
        MetricName="ApproximateAgeOfOldestMessage",
        Dimensions=[{"Name": "QueueName", "Value": queue_url.rstrip("/").rsplit("/", 1)[-1]}],
        StartTime=now - ALARM_WINDOW,
        EndTime=now,
        Period=60,
        Statistics=["Maximum"],
    ).get("Datapoints", [])
    return max((p["Maximum"] for p in points), default=None)


def alarms(entry: dict[str, Any]) -> list[str]:
    """The conditions of the Terraform alarms that hold for one destination's status entry."""
    firing = []
    if entry.get("dlq_depth"):
        firing.append("dlq-not-empty")
    for kind in ("buffer", "queue"):
        age = entry.get(kind, {}).get("oldest_age_seconds")
        if age is not None and age > OLDEST_MESSAGE_ALARM_SECONDS[kind]:
            firing.append(f"{kind}-oldest-message")
    return firing


def collect_status(settings: Settings) -> dict[str, Any]:
    """Per destination: the buffer queue (one message per event), the destination queue (one
    message per record pack, or per record), the DLQ (one message per record or event), the
    events the store applied and the alarm conditions that hold."""
    sqs, cloudwatch = common.sqs(settings), common.aws("cloudwatch", settings)
    status: dict[str, Any] = {}
    for destination in DESTINATIONS:
        entry: dict[str, Any] = {}
        for kind, name in (("buffer", "buffer_queue"), ("queue", "queue")):
            url = settings.destination_queue_url(destination, name)
            if url:
                entry[kind] = {
                    **queue_depth(sqs, url),
                    "oldest_age_seconds": oldest_message_age(cloudwatch, url),
                }
        dlq_url = settings.dlq_url_for(destination)
        if dlq_url:
            entry["dlq_depth"] = queue_depth(sqs, dlq_url)["visible"]
        entry["applied_events"], entry["store_problem"] = applied_events(settings, destination)
        entry["alarms"] = alarms(entry)
        status[destination] = entry
    if settings.intake_queue_url:
        status["intake"] = intake_status(settings, sqs, cloudwatch)
    return status


def intake_status(settings: Settings, sqs: Any, cloudwatch: Any) -> dict[str, Any]:
    """The intake queue (one message per live event, before any destination) and its DLQ."""
    assert settings.intake_queue_url is not None
    url = settings.intake_queue_url
    entry: dict[str, Any] = {
        "buffer": {
            **queue_depth(sqs, url),
            "oldest_age_seconds": oldest_message_age(cloudwatch, url),
        }
    }
    if settings.intake_dlq_url:
        entry["dlq_depth"] = queue_depth(sqs, settings.intake_dlq_url)["visible"]
    entry["alarms"] = [
        "oldest-message" if alarm == "buffer-oldest-message" else alarm for alarm in alarms(entry)
    ]
    return entry


def applied_events(settings: Settings, destination: str) -> tuple[int | None, str | None]:
    """How many events the store applied, or None and why it cannot say."""
    try:
        store = common.open_destination_store(settings, destination)
        try:
            return store.applied_count(), None
        finally:
            store.close()
    except StoreNotReady as exc:
        return None, str(exc)


def cmd_status(args: argparse.Namespace) -> int:
    status = collect_status(common.settings())
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return exit_codes.OK
    print(f"{'':<12} {'events to transform':>20} {'packs to apply':>18} {'dlq':>6} {'applied':>8}")
    print(
        f"{'destination':<12} {'waiting':>9} {'in-flight':>10} {'waiting':>8} {'in-flight':>9} "
        f"{'':>6} {'events':>8}  alarm"
    )
    intake = status.pop("intake", None)
    rows = ({"(intake)": intake} if intake else {}) | status
    for destination, entry in rows.items():
        buffer, queue = entry.get("buffer", {}), entry.get("queue", {})
        alarm = f"ALARM ({', '.join(entry['alarms'])})" if entry["alarms"] else "ok"
        applied = "-" if entry.get("applied_events") is None else entry["applied_events"]
        print(
            f"{destination:<12} {buffer.get('visible', '-'):>9} {buffer.get('in_flight', '-'):>10} "
            f"{queue.get('visible', '-'):>8} {queue.get('in_flight', '-'):>9} "
            f"{entry.get('dlq_depth', '-'):>6} {applied:>8}  {alarm}"
        )
    unreadable = {d: e["store_problem"] for d, e in status.items() if e.get("store_problem")}
    if unreadable:
        print("\nstores that cannot be read (applied: -):")
        for destination, problem in unreadable.items():
            print(f"  {destination}: {problem}")
    print(
        "\nevents to transform: messages in the intake queue (every live event, once) and in a "
        "destination's\nbuffer queue (what the intake handed over, and replays), one per event; "
        "packs to apply: messages\nin the destination queue, each the records of one Lambda batch "
        "(or a single record); dlq: records\nor events that failed for good, one per message "
        "(`datasync dlq list <destination>` says why);\nalarm: where CloudWatch's alarms would "
        "fire (DLQ not empty; oldest message over 600 s in the\nintake or a buffer queue, 900 s in "
        "the destination queue)"
    )
    return exit_codes.OK
