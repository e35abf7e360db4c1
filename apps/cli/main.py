"""`datasync`: look inside a deployment of the pipeline, and operate it.

datasync status [--json]            per destination: queues, DLQ, applied events, ALARM
datasync get <destination> <id>     a stored record as JSON (exit 3 if absent, erased or
                                    not subscribed; --internal: versions and tombstone too)
datasync trace <id>                 where an event is (event, user or correlation id)
datasync dlq list <destination>     what is in a DLQ, and why (consumes nothing)
datasync dlq redrive <destination>  send DLQ messages back (--dry-run, --filter; safe to repeat)
datasync dlq purge <destination>    empty a DLQ (asks; --yes for scripts)
datasync replay --from T --to T     replay archived events (--destination; the stores dedupe)
datasync send --count N             realistic users through the API (demos, load)
datasync logs [-f] [component]      the logs of `make run`, readable
datasync schemas [--write]          check (or rewrite) the contract's JSON Schemas

In a checkout (`make install`) the dev stack adds `datasync up` (the whole pipeline locally,
what `make run` runs) and `datasync package-lambda` (the Lambda zip Terraform deploys).

Exit codes (datasync.core.exit_codes): 0 done, 1 ran but did not succeed, 2 usage error,
3 absent, 4 AWS or the emulator unreachable, 5 misconfigured (the message says what to set).
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import entry_points
from typing import Any

from apps.cli import common, dlq_commands, logs, replay, send, status, trace
from datasync.contract import DESTINATIONS
from datasync.core import exit_codes
from datasync.core.stores import StoreNotReady, StoreUnavailable
from datasync.settings import ConfigError

# Each command's help ends with examples, kept as written.
FORMATTER = argparse.RawDescriptionHelpFormatter
# Command groups other distributions add: each entry point is a ``register(commands)`` like the
# modules' below. The dev stack (devstack/pyproject.toml) adds `up` and `package-lambda`
# this way, so that this CLI never imports it and an install without it has no `up`.
COMMAND_GROUP = "datasync.commands"


def cmd_get(args: argparse.Namespace) -> int:
    settings = common.settings()
    store = common.open_destination_store(settings, args.destination)
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


def _lookup(store: Any, settings: Any, args: argparse.Namespace) -> tuple[Any, str]:
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


def _analytics_subject(settings: Any, user_id: str) -> str:
    from datasync.core.transforms import pseudonym

    if settings.analytics_hash_key is None:
        raise ConfigError("DATASYNC_ANALYTICS_HASH_KEY is needed to find a user's analytics events")
    return pseudonym(user_id, settings.analytics_hash_key.get_secret_value().encode())


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


class CommandParser(argparse.ArgumentParser):
    """Every command's parser (and its sub-commands'): the help's examples kept as written."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", FORMATTER)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="datasync", description=__doc__.split("\n\n")[0], formatter_class=FORMATTER,
        epilog="examples:\n  make run                      # .venv/bin/datasync up\n"
        "  datasync status\n  datasync trace <event id>\n  datasync dlq list crm\n\n"
        "`datasync <command> --help` shows each command's options and examples.\n\n"
        + __doc__.split("\n\n")[-1],
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="<command>", parser_class=CommandParser
    )

    for group in entry_points(group=COMMAND_GROUP):
        group.load()(commands)
    status.register(commands)

    get = commands.add_parser(
        "get", help="print a stored record",
        epilog="examples:\n  datasync get crm <user id>\n  datasync get crm <user id> --internal\n"
        "  datasync get analytics <user id>   # the user's pseudonymous events\n\n"
        "Exit 3 if absent, erased or (marketing) not subscribed; the message says which.\n",
    )  # fmt: skip
    get.add_argument("destination", choices=DESTINATIONS)
    get.add_argument("user_id")
    get.add_argument(
        "--internal",
        action="store_true",
        help="show the stored state as is: per-field versions, the tombstone of an erased user",
    )
    get.set_defaults(func=cmd_get)

    trace.register(commands)
    dlq_commands.register(commands)
    replay.register(commands)
    send.register(commands)
    logs.register(commands)

    schemas = commands.add_parser(
        "schemas", help="check the exported JSON Schemas",
        epilog="examples:\n  datasync schemas           # exit 1 if they drifted\n"
        "  datasync schemas --write   # rewrite them (make schemas)\n",
    )  # fmt: skip
    schemas.add_argument("--write", action="store_true", help="rewrite them from the models")
    schemas.set_defaults(func=cmd_schemas)

    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("datasync")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"datasync: {exc}", file=sys.stderr)
        return exit_codes.CONFIG
    except StoreNotReady as exc:
        print(f"datasync: {exc}", file=sys.stderr)
        return exit_codes.FAILED
    except StoreUnavailable as exc:
        print(
            f"datasync: the store cannot be reached ({exc.reason}): check DATABASE_URL "
            "(or DATASYNC_STORE_DIR) and that the database is up",
            file=sys.stderr,
        )
        return exit_codes.UNAVAILABLE
    except (BotoCoreError, ClientError) as exc:
        endpoint = common.settings().aws_endpoint_url or "AWS"
        print(
            f"datasync: cannot talk to {endpoint}: {exc}\n"
            "Is `make run` running (or are your AWS credentials and region set)?",
            file=sys.stderr,
        )
        return exit_codes.UNAVAILABLE


if __name__ == "__main__":
    sys.exit(main())
