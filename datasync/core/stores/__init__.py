"""Destination stores: where consumers apply records and the CLI reads them back."""

from __future__ import annotations

from pathlib import Path

from datasync.contract import Destination
from datasync.core.stores.connections import StoreUnavailable
from datasync.core.stores.sql import (
    MIGRATE_COMMAND,
    RecordResult,
    SchemaMode,
    SchemaNotReady,
    SqlStore,
    StoreNotReady,
    open_postgres,
    open_sqlite,
)


def open_store(
    destination: Destination,
    *,
    database_url: str | None = None,
    store_dir: Path | None = None,
    read_only: bool = False,
    prepare: bool = True,
    pool_size: int = 1,
    schema: SchemaMode = "migrate",
) -> SqlStore:
    """PostgreSQL when a database URL is given, otherwise a SQLite file in ``store_dir``.

    ``read_only`` is for readers: nothing is created, and a missing store or table raises
    ``StoreNotReady`` with what to check. A writer migrates its schema (``schema="migrate"``) or
    checks that it is migrated (``"check"``: raises ``SchemaNotReady`` while it is behind) now
    (``prepare``; raises ``StoreUnavailable`` if the database cannot be reached), or with its
    first write. ``pool_size``: PostgreSQL connections, one per thread that uses the store at once.
    """
    if database_url:
        store = open_postgres(
            destination, database_url, read_only=read_only, size=pool_size, schema=schema
        )
    elif store_dir is None:
        raise ValueError("a store needs either DATABASE_URL or a store directory")
    else:
        store = open_sqlite(destination, store_dir, read_only=read_only, schema=schema)
    if prepare and not read_only:
        try:
            store.prepare()
        except BaseException:
            store.close()
            raise
    return store


__all__ = [
    "MIGRATE_COMMAND",
    "RecordResult",
    "SchemaMode",
    "SchemaNotReady",
    "SqlStore",
    "StoreNotReady",
    "StoreUnavailable",
    "open_store",
]
