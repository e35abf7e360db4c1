"""``datasync``: run the local stack and look inside it.

datasync up [--infra-only]          the whole pipeline locally (what `make run` runs)
datasync get <destination> <id>     a stored record as JSON (exit 3 if absent, erased or
                                    not subscribed; --internal: versions and tombstone too)
datasync status [--json]            events to transform, packs to apply, DLQ depth, applied
datasync dlq <destination>          what is in a DLQ, and why (does not consume)
datasync dlq <destination> --redrive  send DLQ messages back (safe to repeat)
datasync replay [--minutes N]       replay archived events onto the bus (consumers dedupe)
datasync schemas [--write]          check (or rewrite) the contract's JSON Schemas
datasync package-lambda             build the Lambda zip Terraform deploys

Exit codes (datasync.core.exit_codes): 0 done, 1 ran but did not succeed, 2 usage error,
3 absent, 4 AWS or the emulator unreachable, 5 misconfigured (the message says what to set).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from datasync.contract import DESTINATIONS
from datasync.core import exit_codes
from datasync.settings import ConfigError, Settings


def _settings() -> Settings:
    return Settings.load()


def _sqs(settings: Settings) -> Any:
    from datasync.core.aws import client

    return client(
        "sqs", region=settings.aws_region, endpoint_url=settings.aws_endpoint_url, read_timeout=5
    )


def _store(settings: Settings, destination: str) -> Any:
    from datasync.core.stores import open_store

    return open_store(
        destination, database_url=settings.database_dsn(), store_dir=settings.store_dir
    )  # type: ignore[arg-type]


def cmd_get(args: argparse.Namespace) -> int:
    settings = _settings()
    store = _store(settings, args.destination)
    try:
        view, why = _lookup(store, settings, args)
    finally:
        store.close()
    if view is None:
        hint = "" if why == "no record" else " (--internal shows what is stored)"
        print(f"datasync: no {args.destination} record for {args.user_id}: {why}{hint}",
              file=sys.stderr)  # fmt: skip
        return exit_codes.ABSENT
    print(json.dumps(view, indent=2, sort_keys=True))
    return exit_codes.OK


def _lookup(store: Any, settings: Settings, args: argparse.Namespace) -> tuple[Any, str]:
    """(what to print, "") or (None, why the user is absent to the person asking)."""
    from datasync.core.stores.merge import absence, internal_view, public_view

    if store.kind == "log":  # analytics: the pseudonymous events, found by the pseudonym
        view = store.get(_analytics_subject(settings, args.user_id))
        return (view, "") if view else (None, "no record")
    state = store.state(args.user_id)
    if state is None:
        return None, "no record"
    if args.internal:
        return internal_view(args.user_id, state), ""
    why = absence(args.destination, state)
    return (None, why) if why else (public_view(args.user_id, state), "")


def _analytics_subject(settings: Settings, user_id: str) -> str:
    from datasync.core.transforms import pseudonym

    if settings.analytics_hash_key is None:
        raise ConfigError("DATASYNC_ANALYTICS_HASH_KEY is needed to find a user's analytics events")
    return pseudonym(user_id, settings.analytics_hash_key.get_secret_value().encode())


def _queue_depth(sqs: Any, url: str) -> dict[str, int]:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return {
        "visible": int(attributes.get("ApproximateNumberOfMessages", 0)),
        "in_flight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
    }


def collect_status(settings: Settings) -> dict[str, Any]:
    """Per destination: the buffer queue (one message per event), the destination queue (one
    message per record pack, or per record), the DLQ (one message per record or event) and the
    events the store applied."""
    sqs = _sqs(settings)
    status: dict[str, Any] = {}
    for destination in DESTINATIONS:
        entry: dict[str, Any] = {}
        buffer_url = settings.destination_queue_url(destination, "buffer_queue")
        if buffer_url:
            entry["buffer"] = _queue_depth(sqs, buffer_url)
        queue_url = settings.destination_queue_url(destination)
        if queue_url:
            entry["queue"] = _queue_depth(sqs, queue_url)
        dlq_url = settings.dlq_url_for(destination)
        if dlq_url:
            entry["dlq_depth"] = _queue_depth(sqs, dlq_url)["visible"]
        store = _store(settings, destination)
        try:
            entry["applied_events"] = store.applied_count()
        finally:
            store.close()
        status[destination] = entry
    return status


def cmd_status(args: argparse.Namespace) -> int:
    status = collect_status(_settings())
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return exit_codes.OK
    print(f"{'':<12} {'events to transform':>20} {'packs to apply':>18} {'dlq':>6} {'applied':>8}")
    print(f"{'destination':<12} {'waiting':>9} {'in-flight':>10} {'waiting':>8} {'in-flight':>9} "
          f"{'':>6} {'events':>8}")  # fmt: skip
    for destination, entry in status.items():
        buffer, queue = entry.get("buffer", {}), entry.get("queue", {})
        print(
            f"{destination:<12} {buffer.get('visible', '-'):>9} {buffer.get('in_flight', '-'):>10} "
            f"{queue.get('visible', '-'):>8} {queue.get('in_flight', '-'):>9} "
            f"{entry.get('dlq_depth', '-'):>6} {entry['applied_events']:>8}"
        )
    print(
        "\nevents to transform: messages in the buffer queue, one per event; packs to apply: "
        "messages in the\ndestination queue, each the records of one Lambda batch (or a single "
        "record); dlq: records or\nevents that failed for good, one per message (`datasync dlq "
        "<destination>` says why)"
    )
    return exit_codes.OK


def cmd_dlq(args: argparse.Namespace) -> int:
    from apps.cli.dlq import peek, redrive

    settings = _settings()
    dlq_url = settings.dlq_url_for(args.destination)
    if not dlq_url:
        raise ConfigError(
            f"no DLQ URL for {args.destination}: set DATASYNC_{args.destination.upper()}_DLQ_URL"
        )
    sqs = _sqs(settings)
    if not args.redrive:
        print(json.dumps(peek(sqs, dlq_url), indent=2))
        return exit_codes.OK
    buffer_url = settings.buffer_queue_url_for(args.destination)
    report = redrive(
        sqs,
        dlq_url,
        buffer_url=buffer_url,
        queue_url=settings.queue_url_for(args.destination),
        limit=args.limit,
    )
    print(
        json.dumps(
            {
                "to_buffer_queue": report.to_buffer,
                "to_queue": report.to_queue,
                "failed": report.failed,
            }
        )
    )
    return exit_codes.FAILED if report.failed else exit_codes.OK


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay archived events onto the bus; consumers deduplicate, so this is safe to repeat."""
    import time
    import uuid
    from datetime import UTC, datetime, timedelta

    from datasync.core.aws import client

    settings = _settings()
    if not (settings.archive_arn and settings.event_bus_arn):
        raise ConfigError(
            "replay needs DATASYNC_ARCHIVE_ARN and DATASYNC_EVENT_BUS_ARN "
            "(Terraform outputs archive_arn and event_bus_arn; `make run` sets them)"
        )
    end = datetime.fromisoformat(args.to) if args.to else datetime.now(UTC)
    start = (
        datetime.fromisoformat(args.since) if args.since else end - timedelta(minutes=args.minutes)
    )
    events = client("events", region=settings.aws_region, endpoint_url=settings.aws_endpoint_url)
    name = f"datasync-replay-{uuid.uuid4().hex[:12]}"
    events.start_replay(
        ReplayName=name, EventSourceArn=settings.archive_arn, EventStartTime=start,
        EventEndTime=end, Destination={"Arn": settings.event_bus_arn},
    )  # fmt: skip
    print(f"replay {name}: {start.isoformat()} .. {end.isoformat()}", file=sys.stderr)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        state = events.describe_replay(ReplayName=name)
        print(f"  {state['State']}", file=sys.stderr)
        if state["State"] in ("COMPLETED", "FAILED", "CANCELLED"):
            print(
                json.dumps(
                    {"replay": name, "state": state["State"], "reason": state.get("StateReason")}
                )
            )
            return exit_codes.OK if state["State"] == "COMPLETED" else exit_codes.FAILED
        time.sleep(2)
    print(f"datasync: replay {name} still running after {args.timeout}s", file=sys.stderr)
    return exit_codes.FAILED


def cmd_schemas(args: argparse.Namespace) -> int:
    from datasync.contract.schemas import stale_schemas, write_schemas

    if args.write:
        for path in write_schemas():
            print(f"wrote {path}")
        return exit_codes.OK
    stale = stale_schemas()
    if stale:
        print(
            f"datasync: stale schemas: {', '.join(stale)}; run `datasync schemas --write`",
            file=sys.stderr,
        )
        return exit_codes.FAILED
    print("schemas match the models")
    return exit_codes.OK


def cmd_package_lambda(args: argparse.Namespace) -> int:
    from apps.cli.lambda_package import build_lambda_package

    path = build_lambda_package(args.target, Path(args.out), architecture=args.architecture)
    print(path)
    return exit_codes.OK


def cmd_up(args: argparse.Namespace) -> int:
    from apps.cli.local_stack import run_foreground

    return run_foreground(infra_only=args.infra_only, fresh=args.fresh)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="datasync", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run the whole pipeline locally (make run)")
    up.add_argument("--infra-only", action="store_true", help="emulator + Terraform, no apps")
    up.add_argument(
        "--fresh",
        action="store_true",
        help="start from a clean slate: forget the emulator's saved state (queued events too), "
        "Terraform's state, the stores and the logs (like `make clean-state`)",
    )
    up.set_defaults(func=cmd_up)

    get = commands.add_parser("get", help="print a stored record")
    get.add_argument("destination", choices=DESTINATIONS)
    get.add_argument("user_id")
    get.add_argument(
        "--internal",
        action="store_true",
        help="show the stored state as is: per-field versions, the tombstone of an erased user",
    )
    get.set_defaults(func=cmd_get)

    status = commands.add_parser("status", help="queues, DLQs and applied events per destination")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    dlq = commands.add_parser("dlq", help="show what is in a destination's DLQ and why")
    dlq.add_argument("destination", choices=DESTINATIONS)
    dlq.add_argument(
        "--redrive", action="store_true", help="send the messages back to be processed again"
    )
    dlq.add_argument(
        "--limit", type=int, default=1000, help="move at most this many (with --redrive)"
    )
    dlq.set_defaults(func=cmd_dlq)

    replay = commands.add_parser("replay", help="replay archived events (safe: consumers dedupe)")
    replay.add_argument("--minutes", type=int, default=60, help="replay the last N minutes")
    replay.add_argument("--since", help="start time, ISO 8601 with zone (overrides --minutes)")
    replay.add_argument("--to", help="end time, ISO 8601 with zone (default: now)")
    replay.add_argument("--timeout", type=int, default=300, help="seconds to wait for completion")
    replay.set_defaults(func=cmd_replay)

    schemas = commands.add_parser("schemas", help="check the exported JSON Schemas")
    schemas.add_argument("--write", action="store_true", help="rewrite them from the models")
    schemas.set_defaults(func=cmd_schemas)

    package = commands.add_parser("package-lambda", help="build the Lambda zip")
    package.add_argument("--target", choices=("aws", "local"), default="aws")
    package.add_argument("--architecture", choices=("x86_64", "arm64"), default="x86_64")
    package.add_argument("--out", default="var/build")
    package.set_defaults(func=cmd_package_lambda)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"datasync: {exc}", file=sys.stderr)
        return exit_codes.CONFIG
    except (BotoCoreError, ClientError) as exc:
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or "AWS"
        print(
            f"datasync: cannot talk to {endpoint}: {exc}\n"
            "Is `make run` running (or are your AWS credentials and region set)?",
            file=sys.stderr,
        )
        return exit_codes.UNAVAILABLE


if __name__ == "__main__":
    sys.exit(main())
