"""SQL stores for destination records: SQLite by default, PostgreSQL with DATABASE_URL.

One SQL text serves both databases (``?`` placeholders are translated for psycopg). Every
batch runs in one transaction with a savepoint per record, so one bad record fails alone
and the rest of the batch is still applied. Idempotency comes from ``applied_events``:
a record whose event id is already there changes nothing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

from datasync.contract import Destination, DestinationRecord, consent
from datasync.core.queues import failure_reason, string_values
from datasync.core.stores.merge import StoredState, forget_hidden, internal_view, merge

Outcome = Literal["applied", "unchanged", "duplicate"]


class StoreNotReady(Exception):
    """A reader found no store, or a store without its tables.

    Readers (``datasync get/status/trace``) never create either: creating them would hide a
    dropped or renamed table from the consumer that needs it, and "repair" it with an empty one.
    """


@dataclass(frozen=True)
class RecordResult:
    record: DestinationRecord
    outcome: Outcome | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class _Connection(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def close(self) -> None: ...


class SqlStore:
    """Applies records of one destination. Not thread-safe: one store per worker thread."""

    def __init__(
        self,
        destination: Destination,
        connection: _Connection,
        *,
        postgres: bool,
        read_only: bool = False,
    ):
        self.destination = destination
        self.kind = "log" if destination == "analytics" else "state"
        self._conn = connection
        self._postgres = postgres
        self._read_only = read_only
        self._prefix = f"datasync_{destination}"
        self._keeps_consent = destination == consent.CONSENT_DESTINATION
        if not read_only:
            self._create_tables()

    # -- writing ---------------------------------------------------------------------------
    def apply(self, records: Iterable[DestinationRecord]) -> list[RecordResult]:
        results = []
        self._sql("BEGIN" if self._postgres else "BEGIN IMMEDIATE")
        try:
            for record in records:
                results.append(self._apply_one(record))
            self._sql("COMMIT")
        except BaseException:
            self._sql("ROLLBACK")
            raise
        return results

    def _apply_one(self, record: DestinationRecord) -> RecordResult:
        self._sql("SAVEPOINT record")
        try:
            outcome = self._apply_in_transaction(record)
        except Exception as exc:  # noqa: BLE001 - reported per record, the batch goes on
            self._sql("ROLLBACK TO SAVEPOINT record")
            self._sql("RELEASE SAVEPOINT record")
            return RecordResult(record, error=failure_reason(exc, string_values(record.fields)))
        self._sql("RELEASE SAVEPOINT record")
        return RecordResult(record, outcome=outcome)

    def _apply_in_transaction(self, record: DestinationRecord) -> Outcome:
        if record.destination != self.destination:
            raise ValueError(
                f"a {record.destination} record cannot go to the {self.destination} store"
            )
        inserted = self._sql(
            f"INSERT INTO {self._prefix}_applied_events (event_id, applied_at) VALUES (?, ?) "
            "ON CONFLICT (event_id) DO NOTHING",
            (str(record.event_id), _now()),
        ).rowcount
        if inserted == 0:
            return "duplicate"
        if self.kind == "log":
            return self._append(record)
        return self._merge(record)

    def _append(self, record: DestinationRecord) -> Outcome:
        if record.op != "append":
            raise ValueError(f"the {self.destination} store only appends, got {record.op!r}")
        subject = str(record.fields.get("subject") or record.key)
        self._sql(
            f"INSERT INTO {self._prefix}_log (event_id, subject, version, fields)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
            (str(record.event_id), subject, record.version, json.dumps(record.fields)),
        )
        return "applied"

    def _merge(self, record: DestinationRecord) -> Outcome:
        if record.op not in ("upsert", "delete"):
            raise ValueError(f"the {self.destination} store merges state, got {record.op!r}")
        table = f"{self._prefix}_records"
        # Create the row first so that concurrent writers lock the same row (PostgreSQL).
        self._sql(
            f"INSERT INTO {table} (key, fields, versions, updated_at) VALUES (?, '{{}}', '{{}}', ?)"
            " ON CONFLICT (key) DO NOTHING",
            (record.key, _now()),
        )
        current = self._locked_state(record.key)
        assert current is not None  # the row was just created
        new = merge(current, record)
        if new is None:
            return "unchanged"
        self._write_state(record.key, new)
        return "applied"

    def _write_state(self, key: str, state: StoredState) -> None:
        self._sql(
            f"UPDATE {self._prefix}_records SET fields = ?, versions = ?, deleted_version = ?,"
            " updated_at = ? WHERE key = ?",
            (json.dumps(state.fields), json.dumps(state.versions), state.deleted_version,
             _now(), key),
        )  # fmt: skip
        if self._keeps_consent:
            self._track_hidden(key, state)

    def _track_hidden(self, key: str, state: StoredState) -> None:
        """Remember when to forget details nobody may see (the first time they appeared)."""
        table = f"{self._prefix}_hidden"
        if state.deleted or not consent.hidden_details(state.fields):
            self._sql(f"DELETE FROM {table} WHERE key = ?", (key,))
            return
        forget_after = datetime.now(UTC) + timedelta(
            seconds=consent.HIDDEN_DETAIL_RETENTION_SECONDS
        )
        self._sql(
            f"INSERT INTO {table} (key, forget_after) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
            (key, forget_after.isoformat()),
        )

    def forget_expired_hidden(self, now: datetime | None = None, limit: int = 500) -> int:
        """Erase for good the hidden contact details whose retention is over; returns how many
        keys were cleaned. Consumers call it now and then (see consent.py for why it waits)."""
        if not self._keeps_consent:
            return 0
        cutoff = (now or datetime.now(UTC)).isoformat()
        self._sql("BEGIN" if self._postgres else "BEGIN IMMEDIATE")
        try:
            keys = [
                row[0]
                for row in self._sql(
                    f"SELECT key FROM {self._prefix}_hidden WHERE forget_after <= ? LIMIT ?",
                    (cutoff, limit),
                ).fetchall()
            ]
            for key in keys:
                state = self._locked_state(key)
                forgotten = forget_hidden(state) if state else None
                if forgotten is not None:
                    self._write_state(key, forgotten)
                self._sql(f"DELETE FROM {self._prefix}_hidden WHERE key = ?", (key,))
            self._sql("COMMIT")
        except BaseException:
            self._sql("ROLLBACK")
            raise
        return len(keys)

    def _locked_state(self, key: str) -> StoredState | None:
        lock = " FOR UPDATE" if self._postgres else ""
        row = self._sql(
            f"SELECT fields, versions, deleted_version FROM {self._prefix}_records"
            f" WHERE key = ?{lock}",
            (key,),
        ).fetchone()
        return None if row is None else StoredState(json.loads(row[0]), json.loads(row[1]), row[2])

    # -- reading ---------------------------------------------------------------------------
    def get(self, key: str) -> dict[str, Any] | None:
        """The stored view of one key (user id; the pseudonym for analytics), or None.

        State stores answer with the internals (versions, tombstone): ``merge.absence`` and
        ``merge.public_view`` turn a ``state`` into what the person asking sees.
        """
        if self.kind == "log":
            rows = self._sql(
                f"SELECT event_id, version, fields FROM {self._prefix}_log WHERE subject = ?"
                " ORDER BY version",
                (key,),
            ).fetchall()
            if not rows:
                return None
            return {
                "subject": key,
                "events": [{"event_id": r[0], **json.loads(r[2])} for r in rows],
            }
        state = self.state(key)
        return None if state is None else internal_view(key, state)

    def state(self, key: str) -> StoredState | None:
        """The merged state of one key of a state store (crm, marketing), or None."""
        if self.kind == "log":
            raise TypeError(f"the {self.destination} store is a log, not state")
        row = self._sql(
            f"SELECT fields, versions, deleted_version FROM {self._prefix}_records WHERE key = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        return StoredState(json.loads(row[0]), json.loads(row[1]), row[2])

    def applied_count(self) -> int:
        return int(self._sql(f"SELECT count(*) FROM {self._prefix}_applied_events").fetchone()[0])

    def applied_at(self, event_id: str) -> str | None:
        """When this event was applied (`datasync trace` asks), or None if it never was."""
        row = self._sql(
            f"SELECT applied_at FROM {self._prefix}_applied_events WHERE event_id = ?", (event_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def close(self) -> None:
        self._conn.close()

    # -- plumbing --------------------------------------------------------------------------
    def _sql(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if self._postgres:
            sql = sql.replace("?", "%s")
        try:
            return self._conn.execute(sql, params)
        except Exception as exc:
            if self._read_only and _is_missing_table(exc):
                raise StoreNotReady(
                    f"the {self.destination} store has no table {self._prefix}_*: {exc}."
                    f" It was dropped or renamed, or no {self.destination} consumer has"
                    " started on this database yet (a consumer creates its tables)."
                ) from exc
            raise

    def _create_tables(self) -> None:
        p = self._prefix
        statements = [
            f"CREATE TABLE IF NOT EXISTS {p}_applied_events"
            " (event_id TEXT PRIMARY KEY, applied_at TEXT NOT NULL)",
        ]
        if self.kind == "log":
            statements += [
                f"CREATE TABLE IF NOT EXISTS {p}_log (event_id TEXT PRIMARY KEY,"
                " subject TEXT NOT NULL, version TEXT NOT NULL, fields TEXT NOT NULL)",
                f"CREATE INDEX IF NOT EXISTS {p}_log_subject ON {p}_log (subject)",
            ]
        else:
            statements.append(
                f"CREATE TABLE IF NOT EXISTS {p}_records (key TEXT PRIMARY KEY,"
                " fields TEXT NOT NULL, versions TEXT NOT NULL, deleted_version TEXT,"
                " updated_at TEXT NOT NULL)"
            )
        if self._keeps_consent:
            statements += [
                f"CREATE TABLE IF NOT EXISTS {p}_hidden"
                " (key TEXT PRIMARY KEY, forget_after TEXT NOT NULL)",
                f"CREATE INDEX IF NOT EXISTS {p}_hidden_due ON {p}_hidden (forget_after)",
            ]
        self._sql("BEGIN")
        if self._postgres:
            # Replicas starting together would race on CREATE TABLE IF NOT EXISTS (it is
            # not atomic in PostgreSQL): one advisory lock per destination serialises them.
            self._sql("SELECT pg_advisory_xact_lock(hashtext(?))", (self._prefix,))
        for statement in statements:
            self._sql(statement)
        self._sql("COMMIT")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _is_missing_table(exc: Exception) -> bool:
    # SQLite says so in its message; psycopg raises errors.UndefinedTable (SQLSTATE 42P01).
    return "no such table" in str(exc) or getattr(exc, "sqlstate", None) == "42P01"


def open_sqlite(destination: Destination, store_dir: Path, *, read_only: bool = False) -> SqlStore:
    if read_only:
        return _open_sqlite_for_reading(destination, store_dir / f"{destination}.sqlite3")
    store_dir.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(
        store_dir / f"{destination}.sqlite3",
        isolation_level=None,
        timeout=30,
        check_same_thread=False,
    )
    # WAL lets the CLI read while a consumer writes; NORMAL sync is durable at each commit
    # in WAL mode except on power loss, which is the usual trade for a local store.
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return SqlStore(destination, connection, postgres=False)


def _open_sqlite_for_reading(destination: Destination, path: Path) -> SqlStore:
    if not path.exists():
        raise StoreNotReady(
            f"no {destination} store at {path}: no {destination} consumer has started there yet,"
            " or DATASYNC_STORE_DIR points elsewhere"
        )
    # mode=ro: a reader can neither create the file nor write to it (WAL reads still work).
    connection = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro",
        uri=True,
        isolation_level=None,
        timeout=30,
        check_same_thread=False,
    )
    return SqlStore(destination, connection, postgres=False, read_only=True)


def open_postgres(
    destination: Destination, database_url: str, *, read_only: bool = False
) -> SqlStore:
    import psycopg  # imported here: only the PostgreSQL path needs the driver

    connection = psycopg.connect(database_url, autocommit=True)
    return SqlStore(destination, connection, postgres=True, read_only=read_only)
