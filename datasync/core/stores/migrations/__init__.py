"""The stores' schema, as versioned migrations: the one place that says which tables exist.

Each migration is a module of this package, ``m<version>_<name>.py``, with ``VERSION`` (1, 2, ...
in order, never reused), ``DESCRIPTION`` and ``statements(destination)``: the SQL that takes one
destination's store from the version before to this one, the same text for SQLite and PostgreSQL.
``datasync_schema_migrations`` records, per destination, each version applied and when.

Applying is idempotent (a version already recorded is skipped) and runs in one transaction with
the recording, so a migration is applied entirely or not at all; on PostgreSQL one advisory lock
serialises every migrator (a consumer replica, a migration Job), whatever its destination. A
migration must keep the consumers of the version before working (add, never rename or drop in
the same step): a Helm upgrade migrates before the old pods are replaced.

Version 1 creates the tables with ``IF NOT EXISTS``: a database whose tables an earlier consumer
created (before migrations existed) is recorded at version 1 without a change.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from types import ModuleType

from datasync.contract import Destination

VERSION_TABLE = "datasync_schema_migrations"
# One lock for every destination's migrations: they share the version table.
ADVISORY_LOCK_KEY = VERSION_TABLE


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    module: ModuleType

    def statements(self, destination: Destination) -> list[str]:
        return list(self.module.statements(destination))


def _discover() -> tuple[Migration, ...]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("m") and info.name[1:5].isdigit():
            module = importlib.import_module(f"{__name__}.{info.name}")
            found.append(Migration(module.VERSION, module.DESCRIPTION, module))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1, 2, ... without gaps: {versions}")
    return tuple(found)


MIGRATIONS = _discover()
LATEST_VERSION = MIGRATIONS[-1].version

VERSION_TABLE_DDL = (
    f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (destination TEXT NOT NULL,"
    " version INTEGER NOT NULL, description TEXT NOT NULL, applied_at TEXT NOT NULL,"
    " PRIMARY KEY (destination, version))"
)


def pending(applied: set[int]) -> list[Migration]:
    """The migrations not recorded yet, in order."""
    return [m for m in MIGRATIONS if m.version not in applied]


__all__ = [
    "ADVISORY_LOCK_KEY",
    "LATEST_VERSION",
    "MIGRATIONS",
    "VERSION_TABLE",
    "VERSION_TABLE_DDL",
    "Migration",
    "pending",
]
