"""SQL stores for destination records: SQLite by default, PostgreSQL with DATABASE_URL.

One SQL text serves both databases (``?`` placeholders are translated for psycopg). Every
batch runs in one transaction with a savepoint per record, so one bad record fails alone
and the rest of the batch is still applied. Idempotency comes from ``applied_events``:
a record whose event id is already there changes nothing.

Each unit of work (a batch, a read) borrows a connection (``connections.py``), so a store is
safe to share between threads and outlives its database going away: while it cannot be
reached every call raises ``StoreUnavailable``, and the first call after its return works. A
record fails on its own only when the database refuses *it*.

The tables come from the versioned migrations (``migrations/``). A writer in ``migrate`` mode
(local and dev: SQLite, `make run`) applies those still pending before its first write; in
``check`` mode (a consumer whose database role may not CREATE: the chart's migration Job
migrates) it only reads the schema's version, and while that is behind every call raises
``SchemaNotReady`` saying what to run.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

from datasync.contract import Destination, DestinationRecord, consent
from datasync.core.queues import failure_reason, string_values
from datasync.core.stores.connections import (
    PostgresConnections,
    SqliteConnections,
    StoreUnavailable,
    is_unreachable,
)
from datasync.core.stores.merge import StoredState, forget_hidden, internal_view, merge
from datasync.core.stores.migrations import (
    ADVISORY_LOCK_KEY,
    LATEST_VERSION,
    VERSION_TABLE,
    VERSION_TABLE_DDL,
    Migration,
    pending,
)

Outcome = Literal["applied", "unchanged", "duplicate"]
SchemaMode = Literal["migrate", "check"]
MIGRATE_COMMAND = "datasync-migrate"


class StoreNotReady(Exception):
    """A reader found no store, or a store without its tables.

    Readers (``datasync get/status/trace``) never create either: creating them would hide a
    dropped or renamed table from the consumer that needs it, and "repair" it with an empty one.
    """


class SchemaNotReady(StoreUnavailable):
    """The store's schema is older than this code needs, and this store may not migrate it.

    A kind of StoreUnavailable: a consumer holds its batches (no attempt counted) and says why
    on /readyz until someone runs the migrations; at start it exits 5 with the same reason."""


@dataclass(frozen=True)
class RecordResult:
    record: DestinationRecord
    outcome: Outcome | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Connections(Protocol):
    """Where a store borrows its connections (``connections.py``)."""

    postgres: bool

    def connection(self) -> contextlib.AbstractContextManager[Any]: ...
    def close(self) -> None: ...


Sql = Callable[..., Any]  # run one statement on the borrowed connection: sql(text, params)


class SqlStore:
    """Applies records of one destination, and reads them back. Thread-safe: each call borrows
    a connection of its own (SQLite: one at a time)."""

    def __init__(
        self,
        destination: Destination,
        connections: Connections,
        *,
        read_only: bool = False,
        schema: SchemaMode = "migrate",
    ):
        self.destination = destination
        self.kind = "log" if destination == "analytics" else "state"
        self._connections = connections
        self._postgres = connections.postgres
        self._read_only = read_only
        self._schema_mode = schema
        self._prepared = read_only  # readers never create tables
        self._prefix = f"datasync_{destination}"
        self._keeps_consent = destination == consent.CONSENT_DESTINATION

    # -- writing ---------------------------------------------------------------------------
    def prepare(self) -> None:
        """Migrate the schema (``migrate`` mode) or check its version (``check``) now; done by
        the first write otherwise.

        Raises SchemaNotReady if the schema is behind in ``check`` mode, StoreUnavailable if the
        database cannot be reached."""
        with self._session():
            pass

    # -- the schema --------------------------------------------------------------------------
    def schema_version(self) -> int:
        """The newest migration applied to this destination's store; 0 before any."""
        with self._connections.connection() as connection:
            sql = functools.partial(self._run, connection)
            try:
                row = sql(
                    f"SELECT max(version) FROM {VERSION_TABLE} WHERE destination = ?",
                    (self.destination,),
                ).fetchone()
            except Exception as exc:
                if not _is_missing_table(exc):
                    raise
                return 0
        return int(row[0] or 0)

    def migrate(self) -> list[Migration]:
        """Apply the migrations not recorded yet, in one transaction; the ones applied now.

        A store already at the latest version runs no DDL at all, so that a role without CREATE
        passes here once the migrations have run."""
        if self.schema_version() >= LATEST_VERSION:
            return []
        with self._connections.connection() as connection:
            sql = functools.partial(self._run, connection)
            with self._transaction(sql):
                if self._postgres:
                    # Replicas and the migration Job may start together, and CREATE TABLE IF
                    # NOT EXISTS is not atomic in PostgreSQL: one lock serialises them.
                    sql("SELECT pg_advisory_xact_lock(hashtext(?))", (ADVISORY_LOCK_KEY,))
                sql(VERSION_TABLE_DDL)
                done = {
                    int(row[0])
                    for row in sql(
                        f"SELECT version FROM {VERSION_TABLE} WHERE destination = ?",
                        (self.destination,),
                    ).fetchall()
                }
                todo = pending(done)
                for migration in todo:
                    for statement in migration.statements(self.destination):
                        sql(statement)
                    sql(
                        f"INSERT INTO {VERSION_TABLE} (destination, version, description,"
                        " applied_at) VALUES (?, ?, ?, ?)",
                        (self.destination, migration.version, migration.description, _now()),
                    )
        return todo

    def _ensure_schema(self) -> None:
        """Before the first write: migrate, or check that someone did."""
        if self._schema_mode == "migrate":
            self.migrate()
            return
        # Checked on a connection of its own, and raised once it is back: SchemaNotReady must
        # reach the caller as it is, not as a lost connection.
        version = self.schema_version()
        if version < LATEST_VERSION:
            raise SchemaNotReady(
                f"the {self.destination} store's schema is at version {version}, this consumer"
                f" needs version {LATEST_VERSION}: run `{MIGRATE_COMMAND}` with a database role"
                " that may CREATE (the chart's migration Job runs it before every install and"
                " upgrade); this consumer's role only reads and writes rows"
            )

    def apply(self, records: Iterable[DestinationRecord]) -> list[RecordResult]:
        """Apply a batch in one transaction; each record's result (refusals included).

        Raises StoreUnavailable, with nothing applied, when the database cannot be reached."""
        with self._session() as sql, self._transaction(sql):
            return [self._apply_one(sql, record) for record in records]

    def check(self) -> None:
        """Raise StoreUnavailable unless the store takes a write now (one it rolls back)."""
        with self._session() as sql:
            sql(self._begin)
            try:
                sql(
                    f"INSERT INTO {self._prefix}_applied_events (event_id, applied_at)"
                    " VALUES (?, ?) ON CONFLICT (event_id) DO NOTHING",
                    ("datasync-write-check", _now()),
                )
            finally:
                with contextlib.suppress(Exception):  # the connection may be gone already
                    sql("ROLLBACK")

    @property
    def _begin(self) -> str:
        # SQLite: take the write lock now, so that a locked file fails here and not half-way.
        return "BEGIN" if self._postgres else "BEGIN IMMEDIATE"

    @contextlib.contextmanager
    def _transaction(self, sql: Sql) -> Iterator[None]:
        sql(self._begin)
        try:
            yield
            sql("COMMIT")
        except BaseException:
            # The connection may be gone already: the error that matters is the first one.
            with contextlib.suppress(Exception):
                sql("ROLLBACK")
            raise

    def _apply_one(self, sql: Sql, record: DestinationRecord) -> RecordResult:
        sql("SAVEPOINT record")
        try:
            outcome = self._apply_in_transaction(sql, record)
        except Exception as exc:  # noqa: BLE001 - reported per record, the batch goes on
            if is_unreachable(exc):
                raise  # not this record's failure: the whole batch waits for the database
            sql("ROLLBACK TO SAVEPOINT record")
            sql("RELEASE SAVEPOINT record")
            return RecordResult(record, error=failure_reason(exc, string_values(record.fields)))
        sql("RELEASE SAVEPOINT record")
        return RecordResult(record, outcome=outcome)

    def _apply_in_transaction(self, sql: Sql, record: DestinationRecord) -> Outcome:
        if record.destination != self.destination:
            raise ValueError(
                f"a {record.destination} record cannot go to the {self.destination} store"
            )
        inserted = sql(
            f"INSERT INTO {self._prefix}_applied_events (event_id, applied_at) VALUES (?, ?) "
            "ON CONFLICT (event_id) DO NOTHING",
            (str(record.event_id), _now()),
        ).rowcount
        if inserted == 0:
            return "duplicate"
        if self.kind == "log":
            return self._append(sql, record)
        return self._merge(sql, record)

    def _append(self, sql: Sql, record: DestinationRecord) -> Outcome:
        if record.op != "append":
            raise ValueError(f"the {self.destination} store only appends, got {record.op!r}")
        subject = str(record.fields.get("subject") or record.key)
        sql(
            f"INSERT INTO {self._prefix}_log (event_id, subject, version, fields)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
            (str(record.event_id), subject, record.version, json.dumps(record.fields)),
        )
        return "applied"

    def _merge(self, sql: Sql, record: DestinationRecord) -> Outcome:
        if record.op not in ("upsert", "delete"):
            raise ValueError(f"the {self.destination} store merges state, got {record.op!r}")
        table = f"{self._prefix}_records"
        # Create the row first so that concurrent writers lock the same row (PostgreSQL).
        sql(
            f"INSERT INTO {table} (key, fields, versions, updated_at) VALUES (?, '{{}}', '{{}}', ?)"
            " ON CONFLICT (key) DO NOTHING",
            (record.key, _now()),
        )
        current = self._locked_state(sql, record.key)
        assert current is not None  # the row was just created
        new = merge(current, record)
        if new is None:
            return "unchanged"
        self._write_state(sql, record.key, new)
        return "applied"

    def _write_state(self, sql: Sql, key: str, state: StoredState) -> None:
        sql(
            f"UPDATE {self._prefix}_records SET fields = ?, versions = ?, deleted_version = ?,"
            " updated_at = ? WHERE key = ?",
            (json.dumps(state.fields), json.dumps(state.versions), state.deleted_version,
             _now(), key),
        )  # fmt: skip
        if self._keeps_consent:
            self._track_hidden(sql, key, state)

    def _track_hidden(self, sql: Sql, key: str, state: StoredState) -> None:
        """Remember when to forget details nobody may see (the first time they appeared)."""
        table = f"{self._prefix}_hidden"
        if state.deleted or not consent.hidden_details(state.fields):
            sql(f"DELETE FROM {table} WHERE key = ?", (key,))
            return
        forget_after = datetime.now(UTC) + timedelta(
            seconds=consent.HIDDEN_DETAIL_RETENTION_SECONDS
        )
        sql(
            f"INSERT INTO {table} (key, forget_after) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
            (key, forget_after.isoformat()),
        )

    def forget_expired_hidden(self, now: datetime | None = None, limit: int = 500) -> int:
        """Erase for good the hidden contact details whose retention is over; returns how many
        keys were cleaned. Consumers call it now and then (see consent.py for why it waits)."""
        if not self._keeps_consent:
            return 0
        cutoff = (now or datetime.now(UTC)).isoformat()
        with self._session() as sql, self._transaction(sql):
            keys = [
                row[0]
                for row in sql(
                    f"SELECT key FROM {self._prefix}_hidden WHERE forget_after <= ? LIMIT ?",
                    (cutoff, limit),
                ).fetchall()
            ]
            for key in keys:
                state = self._locked_state(sql, key)
                forgotten = forget_hidden(state) if state else None
                if forgotten is not None:
                    self._write_state(sql, key, forgotten)
                sql(f"DELETE FROM {self._prefix}_hidden WHERE key = ?", (key,))
        return len(keys)

    def _locked_state(self, sql: Sql, key: str) -> StoredState | None:
        lock = " FOR UPDATE" if self._postgres else ""
        row = sql(
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
            rows = self._read(
                f"SELECT event_id, version, fields FROM {self._prefix}_log WHERE subject = ?"
                " ORDER BY version",
                (key,),
            )
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
        rows = self._read(
            f"SELECT fields, versions, deleted_version FROM {self._prefix}_records WHERE key = ?",
            (key,),
        )
        if not rows:
            return None
        return StoredState(json.loads(rows[0][0]), json.loads(rows[0][1]), rows[0][2])

    def applied_count(self) -> int:
        return int(self._read(f"SELECT count(*) FROM {self._prefix}_applied_events")[0][0])

    def applied_at(self, event_id: str) -> str | None:
        """When this event was applied (`datasync trace` asks), or None if it never was."""
        rows = self._read(
            f"SELECT applied_at FROM {self._prefix}_applied_events WHERE event_id = ?", (event_id,)
        )
        return str(rows[0][0]) if rows else None

    def close(self) -> None:
        self._connections.close()

    # -- plumbing --------------------------------------------------------------------------
    def _read(self, text: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._session() as sql:
            return list(sql(text, params).fetchall())

    @contextlib.contextmanager
    def _session(self) -> Iterator[Sql]:
        """A borrowed connection, as ``sql(text, params)``; the tables exist (writers)."""
        if not self._prepared:
            self._ensure_schema()
            self._prepared = True
        with self._connections.connection() as connection:
            yield functools.partial(self._run, connection)

    def _run(self, connection: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        if self._postgres:
            sql = sql.replace("?", "%s")
        try:
            return connection.execute(sql, params)
        except Exception as exc:
            if self._read_only and _is_missing_table(exc):
                raise StoreNotReady(
                    f"the {self.destination} store has no table {self._prefix}_*: {exc}."
                    f" It was dropped or renamed, or no {self.destination} consumer has"
                    " started on this database yet (a consumer creates its tables)."
                ) from exc
            raise


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _is_missing_table(exc: Exception) -> bool:
    # SQLite says so in its message; psycopg raises errors.UndefinedTable (SQLSTATE 42P01).
    return "no such table" in str(exc) or getattr(exc, "sqlstate", None) == "42P01"


def open_sqlite(
    destination: Destination,
    store_dir: Path,
    *,
    read_only: bool = False,
    schema: SchemaMode = "migrate",
) -> SqlStore:
    path = store_dir / f"{destination}.sqlite3"
    if read_only and not path.exists():
        raise StoreNotReady(
            f"no {destination} store at {path}: no {destination} consumer has started there yet,"
            " or DATASYNC_STORE_DIR points elsewhere"
        )
    connections = SqliteConnections(path, read_only=read_only)
    return SqlStore(destination, connections, read_only=read_only, schema=schema)


def open_postgres(
    destination: Destination,
    database_url: str,
    *,
    read_only: bool = False,
    size: int = 1,
    schema: SchemaMode = "migrate",
) -> SqlStore:
    """A store on PostgreSQL with a pool of ``size`` connections (one per thread using it)."""
    connections = PostgresConnections(database_url, size=size, name=f"datasync-{destination}")
    return SqlStore(destination, connections, read_only=read_only, schema=schema)
