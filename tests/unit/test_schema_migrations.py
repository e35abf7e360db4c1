"""The stores' versioned migrations on SQLite, the consumer's check mode and `datasync-migrate`.
PostgreSQL, with a role that may not CREATE: tests/integration/test_schema_migrations.py."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest

from apps.consumers.__main__ import main as consumer_main
from apps.consumers.migrate import main as migrate_main
from datasync.contract import DESTINATIONS
from datasync.core import exit_codes
from datasync.core.stores import SchemaNotReady, StoreUnavailable, open_store
from datasync.core.stores.migrations import LATEST_VERSION, MIGRATIONS, VERSION_TABLE
from tests.builders import record


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def recorded(path: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(path) as db:
        return db.execute(f"SELECT destination, version FROM {VERSION_TABLE}").fetchall()


def test_migrations_are_numbered_in_order_and_each_has_sql_for_every_destination() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert LATEST_VERSION == MIGRATIONS[-1].version
    for migration in MIGRATIONS:
        assert migration.description
        for destination in DESTINATIONS:
            assert all(s.strip() for s in migration.statements(destination))


@pytest.mark.parametrize("destination", DESTINATIONS)
def test_migrating_twice_applies_each_version_once(tmp_path: Path, destination: str) -> None:
    store = open_store(destination, store_dir=tmp_path, prepare=False)
    try:
        assert store.schema_version() == 0
        assert [m.version for m in store.migrate()] == list(range(1, LATEST_VERSION + 1))
        assert store.migrate() == []  # the second run is a no-op
        assert store.schema_version() == LATEST_VERSION
        op = "append" if destination == "analytics" else "upsert"
        [result] = store.apply([record(destination=destination, key="u1", op=op, name="N")])
        assert result.ok and result.outcome == "applied", result
    finally:
        store.close()
    path = tmp_path / f"{destination}.sqlite3"
    assert recorded(path) == [(destination, v) for v in range(1, LATEST_VERSION + 1)]
    assert f"datasync_{destination}_applied_events" in tables(path)


def test_a_store_created_before_migrations_is_recorded_at_version_1_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    """The tables an earlier consumer created (the same DDL, no version table) are version 1."""
    path = tmp_path / "crm.sqlite3"
    with sqlite3.connect(path) as db:
        for statement in MIGRATIONS[0].statements("crm"):
            db.execute(statement)
        db.execute(
            "INSERT INTO datasync_crm_applied_events VALUES ('e-old', '2026-01-01T00:00:00Z')"
        )
    assert VERSION_TABLE not in tables(path)
    store = open_store("crm", store_dir=tmp_path, prepare=False)
    try:
        assert store.schema_version() == 0
        assert [m.version for m in store.migrate()][0] == 1
        assert store.applied_count() == 1  # the old row is still there
    finally:
        store.close()


def test_in_check_mode_a_store_behind_refuses_to_write_says_what_to_run_and_creates_nothing(
    tmp_path: Path,
) -> None:
    checking = open_store("crm", store_dir=tmp_path, prepare=False, schema="check")
    try:
        with pytest.raises(SchemaNotReady) as refused:
            checking.prepare()
        assert "version 0" in refused.value.reason and "datasync-migrate" in refused.value.reason
        # A worker's batch sees a store it cannot use yet (held, no attempt counted), not a
        # refused record.
        with pytest.raises(StoreUnavailable):
            checking.apply([record(key="u1", name="N")])
        assert not tables(tmp_path / "crm.sqlite3"), "check mode created tables"
        # Migrated meanwhile (the migration Job): the same store writes, without a restart.
        migrator = open_store("crm", store_dir=tmp_path, prepare=False)
        migrator.migrate()
        migrator.close()
        [result] = checking.apply([record(key="u1", name="N")])
        assert result.ok and result.outcome == "applied", result
    finally:
        checking.close()


@pytest.fixture
def restore_signals():
    """The consumer's main() installs SIGTERM/SIGINT handlers: put pytest's back afterwards."""
    saved = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


@pytest.fixture
def local_env(monkeypatch, tmp_path: Path) -> Path:
    store_dir = tmp_path / "stores"
    monkeypatch.setenv("DATASYNC_ENV_FILE", str(tmp_path / "none.env"))
    monkeypatch.setenv("DATASYNC_ENV", "local")
    monkeypatch.setenv("DATASYNC_STORE_DIR", str(store_dir))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DATABASE_MIGRATION_URL", raising=False)
    return store_dir


def test_a_consumer_in_check_mode_exits_5_on_an_unmigrated_store_saying_what_to_run(
    local_env: Path, monkeypatch, capsys, restore_signals
) -> None:
    monkeypatch.setenv("DATASYNC_STORE_SCHEMA", "check")
    # The queue is never asked: the schema is checked first.
    monkeypatch.setenv("DATASYNC_QUEUE_URL", "http://127.0.0.1:9/000000000000/crm")
    assert consumer_main(["--destination", "crm"]) == exit_codes.CONFIG
    [line] = capsys.readouterr().err.splitlines()
    assert "crm store's schema is at version 0" in line
    assert f"needs version {LATEST_VERSION}: run `datasync-migrate`" in line
    assert not tables(local_env / "crm.sqlite3")


def test_datasync_migrate_reports_migrates_once_and_checks(local_env: Path, capsys) -> None:
    assert migrate_main(["--check", "--destination", "crm"]) == exit_codes.FAILED
    assert "crm: at version 0, behind" in capsys.readouterr().out
    assert migrate_main([]) == exit_codes.OK
    out = capsys.readouterr().out
    for destination in DESTINATIONS:
        assert f"{destination}: version 0 -> {LATEST_VERSION} (applied 1: " in out
    assert migrate_main([]) == exit_codes.OK
    assert capsys.readouterr().out.count(f"up to date at version {LATEST_VERSION}") == 3
    assert migrate_main(["--check"]) == exit_codes.OK
    for destination in DESTINATIONS:
        assert recorded(local_env / f"{destination}.sqlite3")[-1] == (destination, LATEST_VERSION)


def test_datasync_migrate_waits_for_the_database_then_exits_4(
    local_env: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("DATASYNC_STORE_DIR", str(blocker))  # the files cannot be opened
    slept: list[float] = []
    assert (
        migrate_main(["--wait", "5"], sleep=slept.append, clock=lambda: sum(slept))
        == exit_codes.UNAVAILABLE
    )
    captured = capsys.readouterr()
    assert len(slept) >= 2 and sum(slept) == 5
    assert "does not answer yet" in captured.out and "did not answer within 5 s" in captured.err


def test_datasync_migrate_refuses_a_database_url_that_is_not_verified_tls(
    local_env: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("DATASYNC_ENV", "aws")
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db/datasync?sslmode=verify-full")
    # The migration role's URL is the one used, and checked like the consumers' own.
    monkeypatch.setenv("DATABASE_MIGRATION_URL", "postgresql://owner@db/datasync?sslmode=require")
    assert migrate_main([]) == exit_codes.CONFIG
    assert "sslmode=require" in capsys.readouterr().err
