"""The PostgreSQL store path, against a real server started for the session."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

from datasync.core.stores import open_store
from tests.builders import record
from tests.store_contract import *  # noqa: F403 - the same behaviour as SQLite
from tests.store_contract import opened_stores

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture
def schema_url(postgres_url):
    """Each test gets a fresh schema, selected through the connection's search_path."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return f"{postgres_url}?options=-csearch_path%3D{schema}"


@pytest.fixture
def make_store(schema_url):
    yield from opened_stores(database_url=schema_url)


def test_concurrent_writers_to_one_key_lose_no_field(schema_url):
    """Replicas of a consumer may update the same user at once: row locks serialise them."""
    fields = [f"f{i}" for i in range(8)]
    errors = []

    def writer(index):
        store = open_store("crm", database_url=schema_url)
        try:
            for round_ in range(5):
                [result] = store.apply(
                    [record(key="shared", at=round_ * 10 + index, **{fields[index]: round_})]
                )
                if not result.ok:
                    errors.append(result.error)
        finally:
            store.close()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(len(fields))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    store = open_store("crm", database_url=schema_url)
    view = store.get("shared")
    store.close()
    assert {name: view[name] for name in fields} == {name: 4 for name in fields}


def test_table_creation_is_safe_when_replicas_start_together(schema_url):
    stores = []
    errors = []

    def start():
        try:
            stores.append(open_store("analytics", database_url=schema_url))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for store in stores:
        store.close()
    assert errors == [] and len(stores) == 6
