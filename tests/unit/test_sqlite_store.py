import pytest

from datasync.core.stores import open_store
from tests.store_contract import *  # noqa: F403 - the shared store behaviour
from tests.store_contract import opened_stores


@pytest.fixture
def make_store(tmp_path):
    yield from opened_stores(store_dir=tmp_path)


def test_open_store_needs_a_location():
    with pytest.raises(ValueError, match="DATABASE_URL or a store directory"):
        open_store("crm")
