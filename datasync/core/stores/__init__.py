"""Destination stores: where consumers apply records and the CLI reads them back."""

from __future__ import annotations

from pathlib import Path

from datasync.contract import Destination
from datasync.core.stores.sql import (
    RecordResult,
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
) -> SqlStore:
    """PostgreSQL when a database URL is given, otherwise a SQLite file in ``store_dir``.

    ``read_only`` is for readers: nothing is created, and a missing store or table raises
    ``StoreNotReady`` with what to check.
    """
    if database_url:
        return open_postgres(destination, database_url, read_only=read_only)
    if store_dir is None:
        raise ValueError("a store needs either DATABASE_URL or a store directory")
    return open_sqlite(destination, store_dir, read_only=read_only)


__all__ = ["RecordResult", "SqlStore", "StoreNotReady", "open_store"]
