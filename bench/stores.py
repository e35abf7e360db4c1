"""When each event was applied, read back from the stores' ``applied_events`` tables.

Every store records ``(event_id, applied_at)`` when it commits an event (SQLite files in
DATASYNC_STORE_DIR, or PostgreSQL with DATABASE_URL). Reading it is how the tool knows an event
reached a destination, and when - the consumers' own clock, the same machine's clock as ours.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime
from pathlib import Path
from typing import Any


def _epoch(value: Any) -> float:
    """applied_at as epoch seconds: ISO 8601 text (SQLite) or a timestamp (PostgreSQL)."""
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


class Stores:
    def __init__(self, env: dict[str, str], destinations: list[str]) -> None:
        self.destinations = destinations
        self.database_url = env.get("DATABASE_URL") or None
        self.store_dir = Path(env.get("DATASYNC_STORE_DIR", "var/stores"))
        self._connections: dict[str, Any] = {}
        self._lock = threading.Lock()  # the monitor thread and the passes share connections

    def _connection(self, destination: str) -> Any | None:
        if destination in self._connections:
            return self._connections[destination]
        if self.database_url:
            import psycopg

            connection = psycopg.connect(self.database_url, autocommit=True)
        else:
            path = self.store_dir / f"{destination}.sqlite3"
            if not path.exists():
                return None  # the consumer has not created it yet
            connection = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, timeout=10, check_same_thread=False
            )
        self._connections[destination] = connection
        return connection

    def _query(
        self, destination: str, sql: str, params: tuple[Any, ...] = ()
    ) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._query_unlocked(destination, sql, params)

    def _query_unlocked(
        self, destination: str, sql: str, params: tuple[Any, ...] = ()
    ) -> list[tuple[Any, ...]]:
        connection = self._connection(destination)
        if connection is None:
            return []
        if self.database_url:
            sql = sql.replace("?", "%s")
        table = f"datasync_{destination}_applied_events"
        try:
            return list(connection.execute(sql.format(table=table), params).fetchall())
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # the consumer has not created it yet
                return []
            raise

    def counts(self) -> dict[str, int]:
        return {
            d: int((self._query(d, "SELECT count(*) FROM {table}") or [(0,)])[0][0])
            for d in self.destinations
        }

    def applied_at(self, event_ids: set[str]) -> dict[str, dict[str, float]]:
        """{destination: {event_id: applied epoch}} for those of ``event_ids`` applied so far."""
        result: dict[str, dict[str, float]] = {}
        for destination in self.destinations:
            rows = self._query(destination, "SELECT event_id, applied_at FROM {table}")
            result[destination] = {
                str(event_id): _epoch(applied_at)
                for event_id, applied_at in rows
                if str(event_id) in event_ids
            }
        return result

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()
