"""Destination stores: where consumers apply records and the CLI reads them back."""

from __future__ import annotations

from pathlib import Path

from datasync.contract import Destination
from datasync.core.stores.sql import RecordResult, SqlStore, open_postgres, open_sqlite


def open_store(
    destination: Destination, *, database_url: str | None = None, store_dir: Path | None = None
) -> SqlStore:
    """PostgreSQL when a database URL is given, otherwise a SQLite file in ``store_dir``."""
    if database_url:
        return open_postgres(destination, database_url)
    if store_dir is None:
        raise ValueError("a store needs either DATABASE_URL or a store directory")
    return open_sqlite(destination, store_dir)


__all__ = ["RecordResult", "SqlStore", "open_store"]
