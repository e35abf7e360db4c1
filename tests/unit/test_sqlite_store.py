import pytest

from datasync.core.stores import open_store
from tests.store_contract import *  # noqa: F403 - the shared store behaviour


@pytest.fixture
def make_store(tmp_path):
    opened = []

    def make(destination):
        store = open_store(destination, store_dir=tmp_path)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def test_open_store_needs_a_location():
    with pytest.raises(ValueError, match="DATABASE_URL or a store directory"):
        open_store("crm")
