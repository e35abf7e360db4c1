"""``datasync-migrate``: bring every destination store's schema to the version this code needs.

The chart runs it as a Helm hook Job before each install and upgrade, from the consumer image,
with a database role that may CREATE (DATABASE_MIGRATION_URL; DATABASE_URL when unset), so that
the consumers themselves run as a role that only reads and writes rows
(DATASYNC_STORE_SCHEMA=check). Locally it works on the SQLite files in DATASYNC_STORE_DIR, as
the consumers there do by themselves.

Running it again is a no-op; so is running two at once (the store serialises migrators). It waits
up to ``--wait`` seconds for a database that does not answer yet (a Job often starts beside a
database that is still coming up) and says so every few seconds. ``--check`` changes nothing: it
reports each version and exits 1 when one is behind.

Exit codes (``datasync.core.exit_codes``): 0 done (or up to date), 1 a migration failed or
(``--check``) is pending, 4 the database did not answer in time, 5 misconfigured.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pydantic import ValidationError

from apps.consumers.app import database_url
from datasync.contract import DESTINATIONS
from datasync.core import exit_codes
from datasync.core.stores import SqlStore, StoreUnavailable, open_store
from datasync.core.stores.migrations import LATEST_VERSION
from datasync.settings import ConfigError, Settings

T = TypeVar("T")
RETRY_SECONDS = 2.0
# Said when the database refused a CREATE: the URL is the consumers' role, not the owner's.
NO_CREATE_HINT = (
    " The role may not create tables: run datasync-migrate with the schema owner's URL in"
    " DATABASE_MIGRATION_URL (the chart: secrets.migrationDatabaseUrl, or that key in your Secret)."
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="datasync-migrate",
        description="Apply the pending schema migrations of the destination stores.",
    )
    parser.add_argument(
        "--destination",
        action="append",
        choices=DESTINATIONS,
        help="only this destination (repeatable; default: every destination)",
    )
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a store is behind"
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for a database that does not answer yet (default 60)",
    )
    return parser.parse_args(argv)


def say(message: str) -> None:
    print(f"datasync-migrate: {message}", flush=True)


@dataclass(frozen=True)
class Waiting:
    """How long to wait for a database that does not answer, and with what clock."""

    seconds: float
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


def until_reachable(action: Callable[[], T], what: str, wait: Waiting) -> T:
    """``action()``, retried while the database cannot be reached, for up to ``wait`` seconds."""
    deadline = wait.clock() + wait.seconds
    while True:
        try:
            return action()
        except StoreUnavailable as exc:
            left = deadline - wait.clock()
            if left <= 0:
                raise
            say(f"{what}: the database does not answer yet ({exc.reason}); retrying")
            wait.sleep(min(RETRY_SECONDS, left))


def migrate_one(store: SqlStore, check: bool, wait: Waiting) -> bool:
    """Report or migrate one store; False when ``check`` finds it behind."""
    name = store.destination
    version = until_reachable(store.schema_version, name, wait)
    if version >= LATEST_VERSION:
        say(f"{name}: up to date at version {version}")
        return True
    if check:
        say(f"{name}: at version {version}, behind {LATEST_VERSION}: run datasync-migrate")
        return False
    applied = until_reachable(store.migrate, name, wait)
    steps = "; ".join(f"{m.version}: {m.description}" for m in applied) or "none (done meanwhile)"
    say(f"{name}: version {version} -> {LATEST_VERSION} (applied {steps})")
    return True


def main(
    argv: list[str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    args = parse_args(argv)
    wait = Waiting(args.wait, sleep, clock)
    try:
        settings = Settings.load()
        url = database_url(settings, for_migrations=True)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_input=False)
        )
        print(f"datasync-migrate: invalid settings: {problems}", file=sys.stderr)
        return exit_codes.CONFIG
    except ConfigError as exc:
        print(f"datasync-migrate: {exc}", file=sys.stderr)
        return exit_codes.CONFIG
    where = "PostgreSQL" if url else f"SQLite files in {settings.store_dir}"
    say(f"schema version {LATEST_VERSION} wanted, on {where}")
    behind = False
    for destination in args.destination or DESTINATIONS:
        store = open_store(
            destination, database_url=url, store_dir=settings.store_dir, prepare=False
        )
        try:
            behind |= not migrate_one(store, args.check, wait)
        except StoreUnavailable as exc:
            print(
                f"datasync-migrate: {destination}: the database did not answer within "
                f"{args.wait:.0f} s: {exc.reason}",
                file=sys.stderr,
            )
            return exit_codes.UNAVAILABLE
        except Exception as exc:  # noqa: BLE001 - one line saying why, then the exit code
            reason = " ".join(str(exc).split())
            hint = NO_CREATE_HINT if _is_permission_denied(exc) else ""
            print(
                f"datasync-migrate: {destination}: the migration failed and was rolled back "
                f"({type(exc).__name__}: {reason}).{hint}",
                file=sys.stderr,
            )
            return exit_codes.FAILED
        finally:
            store.close()
    return exit_codes.FAILED if behind else exit_codes.OK


def _is_permission_denied(exc: BaseException) -> bool:
    # PostgreSQL: SQLSTATE 42501 (insufficient_privilege).
    return getattr(exc, "sqlstate", None) == "42501" or "permission denied" in str(exc)


if __name__ == "__main__":
    sys.exit(main())
