"""Versioned migrations on a real PostgreSQL, the way the chart deploys them: `datasync-migrate`
(the migration Job) as the schema's owner, the consumers as a role that may only read and write
rows (SELECT, INSERT, UPDATE, DELETE), with DATASYNC_STORE_SCHEMA=check.

Needs PostgreSQL's server binaries (tests/postgres.py), not the emulator stack: SQS is moto,
in-process, where a consumer worker needs a queue.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import boto3
import psycopg
import pytest
from moto import mock_aws

from apps.consumers.metrics import ConsumerMetrics
from apps.consumers.worker import ConsumerWorker, RedriveTarget
from datasync.contract import DESTINATIONS
from datasync.core.stores import open_store
from datasync.core.stores.migrations import LATEST_VERSION, VERSION_TABLE
from tests.builders import record

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

ROW_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"


@dataclass(frozen=True)
class Database:
    schema: str
    owner_url: str  # may CREATE in the schema: the migration Job's role
    consumer_url: str  # rows only: the consumers' role
    admin_url: str

    def versions(self) -> list[tuple[str, int, str]]:
        with psycopg.connect(self.admin_url) as conn:
            return conn.execute(
                f"SELECT destination, version, applied_at FROM {self.schema}.{VERSION_TABLE}"
                " ORDER BY destination, version"
            ).fetchall()

    def tables(self) -> set[str]:
        with psycopg.connect(self.admin_url) as conn:
            rows = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s", (self.schema,)
            )
            return {row[0] for row in rows}


def _as_user(url: str, user: str, schema: str) -> str:
    parts = urlsplit(url)
    netloc = f"{user}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc, query=f"options=-csearch_path%3D{schema}"))


@pytest.fixture
def database(postgres_url: str) -> Database:
    """A schema owned by a role of its own, and a consumer role with row privileges on every
    table that owner creates there (ALTER DEFAULT PRIVILEGES, as docs/aws.md sets it up)."""
    suffix = uuid.uuid4().hex[:8]
    schema, owner, consumer = f"m_{suffix}", f"owner_{suffix}", f"consumer_{suffix}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {owner} LOGIN")
        conn.execute(f"CREATE ROLE {consumer} LOGIN")
        conn.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {owner}")
        conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {consumer}")
        conn.execute(
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema}"
            f" GRANT {ROW_PRIVILEGES} ON TABLES TO {consumer}"
        )
    return Database(
        schema,
        _as_user(postgres_url, owner, schema),
        _as_user(postgres_url, consumer, schema),
        postgres_url,
    )


def run_command(name: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """One of the project's console scripts, as a container runs it (no env file)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("DATASYNC_", "DATABASE"))}
    environ.update(DATASYNC_ENV="local", DATASYNC_ENV_FILE="/nonexistent/datasync.env", **env)
    script = os.path.join(os.path.dirname(sys.executable), name)
    return subprocess.run(
        [script, *args], env=environ, capture_output=True, text=True, timeout=120, check=False
    )


def migrate(database: Database, *args: str) -> subprocess.CompletedProcess[str]:
    """datasync-migrate as the chart's Job runs it: both URLs given, the owner's used."""
    return run_command(
        "datasync-migrate",
        *args,
        DATABASE_URL=database.consumer_url,
        DATABASE_MIGRATION_URL=database.owner_url,
    )


def test_migrating_twice_changes_nothing_the_second_time(database: Database) -> None:
    first = migrate(database)
    assert first.returncode == 0, first.stderr
    for destination in DESTINATIONS:
        assert f"{destination}: version 0 -> {LATEST_VERSION}" in first.stdout
    recorded = database.versions()
    assert [(d, v) for d, v, _ in recorded] == sorted(
        (d, v) for d in DESTINATIONS for v in range(1, LATEST_VERSION + 1)
    )
    second = migrate(database)
    assert second.returncode == 0, second.stderr
    assert second.stdout.count(f"up to date at version {LATEST_VERSION}") == len(DESTINATIONS)
    assert database.versions() == recorded, "the second run recorded or re-applied something"
    assert migrate(database, "--check").returncode == 0


def test_migrators_started_together_apply_each_version_once(database: Database) -> None:
    """Replicas in migrate mode and a Job may start at the same moment: one lock for all."""
    errors: list[BaseException] = []

    def one(destination: str) -> None:
        store = open_store(destination, database_url=database.owner_url, prepare=False)
        try:
            store.migrate()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=one, args=(d,)) for d in DESTINATIONS * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(database.versions()) == len(DESTINATIONS) * LATEST_VERSION


def test_the_consumer_role_may_not_create_so_migrating_with_it_fails_and_is_rolled_back(
    database: Database,
) -> None:
    """The role is what it claims: no CREATE. Migrating with it says which URL to use."""
    with (
        psycopg.connect(database.consumer_url) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("CREATE TABLE probe (x int)")
    done = run_command("datasync-migrate", DATABASE_URL=database.consumer_url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "rolled back" in done.stderr and "DATABASE_MIGRATION_URL" in done.stderr
    assert database.tables() == set(), "a failed migration left tables behind"


def test_a_consumer_against_an_unmigrated_database_exits_5_saying_what_to_run(
    database: Database,
) -> None:
    done = run_command(
        "datasync-consumer",
        "--destination",
        "crm",
        DATABASE_URL=database.consumer_url,
        DATASYNC_STORE_SCHEMA="check",
        # Never asked: the schema is checked before the queue.
        DATASYNC_QUEUE_URL="http://127.0.0.1:9/000000000000/crm",
    )
    assert done.returncode == 5, done.stdout + done.stderr
    assert "crm store's schema is at version 0" in done.stderr
    assert "run `datasync-migrate`" in done.stderr
    assert database.tables() == set()


def test_a_consumer_whose_role_may_not_create_applies_records_once_migrated(
    database: Database, monkeypatch
) -> None:
    assert migrate(database).returncode == 0
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        for destination in DESTINATIONS:
            queue = sqs.create_queue(QueueName=f"{destination}-{database.schema}")["QueueUrl"]
            store = open_store(
                destination, database_url=database.consumer_url, schema="check", prepare=False
            )
            try:
                worker = ConsumerWorker(
                    sqs=sqs,
                    queue_url=queue,
                    store=store,
                    redrive=RedriveTarget.of_queue(sqs, queue),
                    metrics=ConsumerMetrics(destination),
                    wait_seconds=0,
                )
                op = "append" if destination == "analytics" else "upsert"
                first = record(destination=destination, key="u1", op=op, name="Ada")
                body = first.model_dump_json()
                for message in (body, body):  # a redelivery changes nothing
                    sqs.send_message(QueueUrl=queue, MessageBody=message)
                applied = 0
                for _ in range(5):
                    applied += worker.poll_once()
                assert applied == 2
                assert worker.metrics.snapshot() == {"applied": 1, "duplicate": 1}
                assert store.get("u1") is not None
                assert store.migrate() == []  # up to date: no DDL, so this role passes too
            finally:
                store.close()
