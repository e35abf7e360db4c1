import pytest

from datasync.core.stores import StoreNotReady, StoreUnavailable, open_store
from tests.builders import record
from tests.store_contract import *  # noqa: F403 - the shared store behaviour
from tests.store_contract import opened_stores


@pytest.fixture
def make_store(tmp_path):
    yield from opened_stores(store_dir=tmp_path)


def test_open_store_needs_a_location():
    with pytest.raises(ValueError, match="DATABASE_URL or a store directory"):
        open_store("crm")


def test_reading_a_store_that_is_not_there_creates_nothing(tmp_path):
    with pytest.raises(StoreNotReady, match="no crm store at .*DATASYNC_STORE_DIR"):
        open_store("crm", store_dir=tmp_path / "stores", read_only=True)
    assert not (tmp_path / "stores").exists()


def test_a_reader_cannot_write(tmp_path):
    open_store("crm", store_dir=tmp_path).close()
    reader = open_store("crm", store_dir=tmp_path, read_only=True)
    with pytest.raises(StoreUnavailable, match="attempt to write a readonly database"):
        reader.apply([record(key="u1", at=1, name="Ada")])
    assert reader.applied_count() == 0
    reader.close()
