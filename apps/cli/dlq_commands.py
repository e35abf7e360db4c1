"""`datasync dlq list | redrive | purge <destination>`: the DLQ as an operator handles it."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from apps.cli import common
from apps.cli.dlq import list_messages, parse_filters, redrive
from datasync.contract import DESTINATIONS
from datasync.core import exit_codes
from datasync.core.queues import queue_depth
from datasync.settings import ConfigError, Settings, queue_setting_name

COLUMNS = ("age", "reason", "stage", "receive_count", "event_id", "correlation_id")

LIST_EXAMPLES = """\
examples:
  datasync dlq list crm                 # age, reason, stage, receives, event and correlation id
  datasync dlq list crm --json          # every field, for scripts (jq)
  datasync dlq list marketing --limit 50

Listing receives the messages and makes them visible again at once: it consumes nothing.
"""
REDRIVE_EXAMPLES = """\
examples:
  datasync dlq redrive crm --dry-run                  # what would move where, moves nothing
  datasync dlq redrive crm                            # every message back (fix the cause first)
  datasync dlq redrive crm --filter reason=timeout    # only those whose reason contains "timeout"
  datasync dlq redrive crm --filter stage=consume --limit 100

A bus event goes back to the buffer queue (transformed again), a record to the destination
queue. Each message is deleted from the DLQ only after it was sent; the stores ignore events
they already applied, so a redrive is safe to repeat. Exit 1 if a message could not be sent.
"""
PURGE_EXAMPLES = """\
examples:
  datasync dlq purge crm          # asks first (type the destination's name)
  datasync dlq purge crm --yes    # for scripts; without a terminal, --yes is required

Purged messages are gone for good: `datasync dlq list` them first, or redrive them.
"""


def register(commands: Any) -> None:
    dlq = commands.add_parser(
        "dlq",
        help="list, redrive or purge a destination's DLQ",
        description="What failed for good in a destination's DLQ, and what to do about it.",
        epilog="examples:\n  datasync dlq list crm\n  datasync dlq redrive crm --dry-run\n"
        "  datasync dlq purge crm --yes\n",
    )
    actions = dlq.add_subparsers(dest="dlq_command", required=True, metavar="{list,redrive,purge}")

    listing = actions.add_parser("list", help="what is in the DLQ, and why", epilog=LIST_EXAMPLES)
    listing.add_argument("destination", choices=DESTINATIONS)
    listing.add_argument("--limit", type=_positive, default=1000, help="at most N (default 1000)")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    listing.set_defaults(func=cmd_list)

    send_back = actions.add_parser(
        "redrive",
        help="send DLQ messages back to be processed again (safe to repeat)",
        epilog=REDRIVE_EXAMPLES,
    )
    send_back.add_argument("destination", choices=DESTINATIONS)
    send_back.add_argument("--dry-run", action="store_true", help="count, move nothing")
    send_back.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only matching messages (repeatable, all must hold): reason=TEXT (contained, any "
        "case), stage=STAGE, event_id=ID, correlation_id=ID",
    )
    send_back.add_argument("--limit", type=_positive, default=10000, help="move at most N")
    send_back.add_argument("--json", action="store_true", help="the summary as JSON")
    send_back.set_defaults(func=cmd_redrive)

    purge = actions.add_parser("purge", help="delete every DLQ message", epilog=PURGE_EXAMPLES)
    purge.add_argument("destination", choices=DESTINATIONS)
    purge.add_argument("--yes", action="store_true", help="do not ask (scripts)")
    purge.set_defaults(func=cmd_purge)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _dlq_url(settings: Settings, destination: str) -> str:
    url = settings.dlq_url_for(destination)
    if not url:
        raise ConfigError(
            f"no DLQ URL for {destination}: set {queue_setting_name(destination, 'dlq')} "
            "(Terraform output dlq_urls; `make run` writes it to var/local/datasync.env)"
        )
    return url


def cmd_list(args: argparse.Namespace) -> int:
    settings = common.settings()
    messages = list_messages(
        common.sqs(settings), _dlq_url(settings, args.destination), limit=args.limit
    )
    if args.json:
        common.print_json(messages)
        return exit_codes.OK
    if not messages:
        print(f"the {args.destination} DLQ is empty")
        return exit_codes.OK
    rows = [
        {
            **m,
            "age": common.age(m["age_seconds"]),
            "event_id": m.get("event_id") or m.get("event_ids"),
            "correlation_id": m.get("correlation_id") or m.get("correlation_ids"),
        }
        for m in messages
    ]
    common.table(rows, COLUMNS)
    more = " (--limit reached; there may be more)" if len(messages) >= args.limit else ""
    print(
        f"\n{len(messages)} message(s){more}. `datasync dlq redrive {args.destination}` "
        "sends them back once the cause is fixed."
    )
    return exit_codes.OK


def cmd_redrive(args: argparse.Namespace) -> int:
    try:
        filters = parse_filters(args.filter)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    settings = common.settings()
    sqs = common.sqs(settings)
    dlq_url = _dlq_url(settings, args.destination)
    total = min(queue_depth(sqs, dlq_url)["visible"], args.limit)
    verb = "would move" if args.dry_run else "redrive"
    with common.progress(f"{verb} {args.destination}", total) as bar:

        def on_batch(report: Any) -> None:
            bar.update(report.moved + len(report.failed) - bar.done, failed=len(report.failed))

        report = redrive(
            sqs,
            dlq_url,
            buffer_url=settings.buffer_queue_url_for(args.destination),
            queue_url=settings.queue_url_for(args.destination),
            limit=args.limit,
            filters=filters,
            dry_run=args.dry_run,
            on_batch=on_batch,
        )
    if args.json:
        common.print_json(report.as_dict())
    else:
        prefix = "dry run, nothing moved: would send" if args.dry_run else "sent"
        print(
            f"{prefix} {report.to_buffer} to the buffer queue (transformed again) and "
            f"{report.to_queue} to the destination queue; {report.skipped} left in the DLQ"
            + (
                f"; {len(report.failed)} could not be sent (still in the DLQ)"
                if report.failed
                else ""
            )
        )
    return exit_codes.FAILED if report.failed else exit_codes.OK


def cmd_purge(args: argparse.Namespace) -> int:
    settings = common.settings()
    sqs = common.sqs(settings)
    dlq_url = _dlq_url(settings, args.destination)
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigError(
                "purge deletes every DLQ message for good; no terminal to ask on: "
                "pass --yes to purge without asking"
            )
        count = queue_depth(sqs, dlq_url)["visible"]
        print(
            f"Delete all {count} message(s) of the {args.destination} DLQ for good? "
            f"Type '{args.destination}' to confirm: ",
            end="",
            file=sys.stderr,
            flush=True,
        )
        if sys.stdin.readline().strip() != args.destination:
            print("datasync: not purged", file=sys.stderr)
            return exit_codes.FAILED
    sqs.purge_queue(QueueUrl=dlq_url)
    print(f"purged the {args.destination} DLQ")
    return exit_codes.OK
