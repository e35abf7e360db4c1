"""Where a store's connections come from, and which failures mean "the database is not there".

A store borrows a connection for each unit of work (a batch, a read) from one of two sources:

- ``PostgresConnections``: a psycopg_pool ``ConnectionPool`` that checks each connection as it
  lends it, replaces broken ones in the background and gives up on a connection attempt after
  ``RECONNECT_WINDOW_SECONDS``, so that a waiting borrower starts a fresh attempt (the pool's own
  backoff doubles without a cap; restarting it keeps every attempt within seconds of the
  previous one, whatever the length of the outage).
- ``SqliteConnections``: one connection to the file, lent to one thread at a time, and opened
  again after an error that says the file could not be reached.

Both raise ``StoreUnavailable`` when the database cannot be reached or cannot take writes right
now: connection refused or reset, the server shutting down or starting, read-only (a standby,
or a failover in progress), locked beyond the lock timeout, out of disk, a file or directory
that cannot be opened or written. Everything else (a constraint or a trigger refusing a row,
data the database does not accept) is the record's own failure and is reported as such. The
consumer waits out the first kind without counting it against any record.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datasync.core.queues import failure_reason

# A writer waits this long for SQLite's write lock (another writer's transaction) before the
# store counts as unreachable; PostgreSQL waits as long for a row or table lock (lock_timeout,
# unless DATABASE_URL sets one). Either way the batch is held and retried, not failed.
LOCK_TIMEOUT_SECONDS = 5
# PostgreSQL: how long a borrower waits for a connection before the store counts as unreachable.
BORROW_TIMEOUT_SECONDS = 5.0
# How long the pool retries one connection attempt (after 1, 2, 4 s) before it starts afresh: at
# most about 4 s between attempts, however long the database is away.
RECONNECT_WINDOW_SECONDS = 10.0
# libpq settings applied unless DATABASE_URL sets them: a host that does not answer fails the
# connection in 5 s, and a peer that vanished mid-query is noticed within about 30 s instead of
# the kernel's two hours.
CONNECTION_DEFAULTS = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "15",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
}
# SQLSTATE classes and codes that say the server cannot serve us now (not: refuses this row).
# 08 connection exception, 53 insufficient resources (disk full, too many connections),
# 58 system error (I/O); 57P01-57P03 shutting down / crashed / starting up; 25006 read-only
# transaction (a standby, a failover); 55P03 lock not available (lock_timeout).
PG_UNREACHABLE_CLASSES = ("08", "53", "58")
PG_UNREACHABLE_CODES = ("57P01", "57P02", "57P03", "25006", "55P03")
# SQLite primary result codes of the same kind: BUSY and LOCKED (locked beyond the busy
# timeout), READONLY (the file, or its directory, is not writable), IOERR, FULL, CANTOPEN,
# PROTOCOL (a lock protocol race), PERM (access denied).
SQLITE_UNREACHABLE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_PERM,
    }
)
logger = logging.getLogger("datasync.stores")


class StoreUnavailable(Exception):
    """The database cannot be reached, or cannot take writes, right now; ``reason`` says why
    (an error type and message: never a record's values)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is not there (rather than: it refuses this record)."""
    if isinstance(exc, StoreUnavailable | OSError):
        return True
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in SQLITE_UNREACHABLE_CODES
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        return sqlstate[:2] in PG_UNREACHABLE_CLASSES or sqlstate in PG_UNREACHABLE_CODES
    # psycopg's own errors without a SQLSTATE (connection failed, lost, closed or timed out;
    # psycopg_pool's PoolTimeout) derive from these. Named, not imported: SQLite needs no psycopg.
    return any(
        cls.__module__.startswith("psycopg")
        and cls.__name__ in ("OperationalError", "InterfaceError")
        for cls in type(exc).__mro__
    )


def _unavailable(exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(" ".join(failure_reason(exc).split()))  # libpq's lines, on one


class SqliteConnections:
    """One SQLite connection, lent to one thread at a time; reopened after it could not reach
    its file. Writers create the directory and the file; readers open it read-only."""

    postgres = False

    def __init__(self, path: Path, *, read_only: bool = False):
        self.path = path
        self.read_only = read_only
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None

    @contextlib.contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            connection = self._connection or self._open()
            try:
                yield connection
            except Exception as exc:
                if not is_unreachable(exc):
                    raise
                self._discard()  # a fresh one sees the file as it is now (writable again)
                raise _unavailable(exc) from exc

    def _open(self) -> sqlite3.Connection:
        try:
            if self.read_only:
                # mode=ro: a reader can neither create the file nor write to it.
                connection = sqlite3.connect(
                    f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                    timeout=LOCK_TIMEOUT_SECONDS, check_same_thread=False,
                )  # fmt: skip
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                connection = sqlite3.connect(
                    self.path, isolation_level=None, timeout=LOCK_TIMEOUT_SECONDS,
                    check_same_thread=False,
                )  # fmt: skip
                # WAL lets the CLI read while a consumer writes; NORMAL sync is durable at each
                # commit in WAL mode except on power loss, the usual trade for a local store.
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")
        except (OSError, sqlite3.Error) as exc:
            if is_unreachable(exc):
                raise _unavailable(exc) from exc
            raise
        self._connection = connection
        return connection

    def _discard(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(sqlite3.Error):
                self._connection.close()
            self._connection = None

    def close(self) -> None:
        with self._lock:
            self._discard()


class PostgresConnections:
    """A pool of up to ``size`` PostgreSQL connections (autocommit: the store runs its own
    transactions), checked as they are lent; broken ones are replaced in the background."""

    postgres = True

    def __init__(self, database_url: str, *, size: int = 1, name: str = "datasync"):
        from psycopg import Connection, Error
        from psycopg.conninfo import conninfo_to_dict
        from psycopg_pool import ConnectionPool

        given = conninfo_to_dict(database_url)
        kwargs: dict[str, Any] = {k: v for k, v in CONNECTION_DEFAULTS.items() if k not in given}
        kwargs["autocommit"] = True
        self.last_connect_error = "no connection attempt finished yet"
        connections = self

        class ReportingConnection(Connection):  # type: ignore[type-arg]
            """Remembers why the last connection attempt failed: readiness says it."""

            @classmethod
            def connect(cls, conninfo: str = "", **params: Any) -> Any:
                try:
                    return super().connect(conninfo, **params)
                except Error as exc:
                    connections.last_connect_error = _unavailable(exc).reason
                    raise

        # The pool logs every failed attempt; the consumer says it once, with readiness.
        logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
        self._pool = ConnectionPool(
            database_url,
            connection_class=ReportingConnection,
            kwargs=kwargs,
            min_size=size,
            max_size=size,
            open=True,  # connects in the background: a database that is down is no error here
            configure=self._configure,
            check=ConnectionPool.check_connection,
            timeout=BORROW_TIMEOUT_SECONDS,
            reconnect_timeout=RECONNECT_WINDOW_SECONDS,
            num_workers=1,
            name=name,
        )

    @staticmethod
    def _configure(connection: Any) -> None:
        """Wait for a lock at most LOCK_TIMEOUT_SECONDS, unless something set a lock timeout
        already (DATABASE_URL's options, PGOPTIONS, the role's or the database's settings)."""
        if connection.execute("SHOW lock_timeout").fetchone()[0] == "0":
            connection.execute(f"SET lock_timeout = '{LOCK_TIMEOUT_SECONDS}s'")

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        from psycopg_pool import PoolTimeout

        try:
            connection = self._pool.getconn()
        except PoolTimeout as exc:
            raise StoreUnavailable(
                f"no connection within {BORROW_TIMEOUT_SECONDS:.0f} s: {self.last_connect_error}"
            ) from exc
        try:
            yield connection
        except Exception as exc:
            if not (is_unreachable(exc) or connection.closed or connection.broken):
                raise
            # A read-only or locked session still works, but a new one may reach the new
            # primary after a failover: the pool replaces what it gets back closed.
            connection.close()
            raise _unavailable(exc) from exc
        finally:
            self._pool.putconn(connection)

    def close(self) -> None:
        self._pool.close(timeout=5)


def postgres_sslmode(database_url: str) -> str | None:
    """The ``sslmode`` a PostgreSQL URL or DSN asks for, or None when it says nothing.

    Raises ValueError when libpq cannot parse it (its message is not repeated: it may quote the
    password).
    """
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        return conninfo_to_dict(database_url).get("sslmode")
    except ProgrammingError:
        raise ValueError(
            "DATABASE_URL is neither a postgresql:// URL nor a key=value connection string"
        ) from None
