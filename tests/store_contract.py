"""Behaviour every store backend must have; imported by the SQLite and PostgreSQL tests.

The importing module provides a ``make_store(destination)`` fixture (see ``opened_stores``).
"""

from __future__ import annotations

import uuid

import pytest

from datasync.core.stores import StoreNotReady, open_store
from datasync.core.transforms import pseudonym
from tests.builders import record


def opened_stores(**location):
    """Generator body of a ``make_store`` fixture: opens stores at ``location``, closes them."""
    opened = []

    def make(destination, **options):
        store = open_store(destination, **location, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def test_applies_and_reads_back(make_store):
    store = make_store("crm")
    [result] = store.apply([record(key="u1", at=1, name="Ada", country="GB")])
    assert result.ok and result.outcome == "applied"
    view = store.get("u1")
    assert view["name"] == "Ada" and view["country"] == "GB" and view["deleted"] is False


def test_a_reader_sees_what_a_consumer_applied(make_store):
    make_store("crm").apply([record(key="u1", at=1, name="Ada")])
    reader = make_store("crm", read_only=True)
    assert reader.get("u1")["name"] == "Ada" and reader.applied_count() == 1


def test_a_reader_does_not_recreate_a_table_a_bad_migration_renamed(make_store):
    consumer = make_store("crm")
    consumer.apply([record(key="u1", at=1, name="Ada")])
    with consumer._session() as sql:
        sql("ALTER TABLE datasync_crm_records RENAME TO datasync_crm_records_renamed")
    with pytest.raises(StoreNotReady, match="no table datasync_crm_"):
        make_store("crm", read_only=True).get("u1")
    # Had the first reader created the table, this one would find it empty and answer None.
    with pytest.raises(StoreNotReady):
        make_store("crm", read_only=True).get("u1")


def test_unknown_key_reads_as_none(make_store):
    assert make_store("crm").get("nobody") is None


def test_redelivered_event_is_a_duplicate_and_changes_nothing(make_store):
    store = make_store("crm")
    r = record(key="u1", at=1, name="Ada")
    store.apply([r])
    store.apply([record(key="u1", at=2, name="Newer")])
    [again] = store.apply([r])
    assert again.outcome == "duplicate"
    assert store.get("u1")["name"] == "Newer"
    assert store.applied_count() == 2


def test_older_update_does_not_overwrite_newer_state(make_store):
    store = make_store("crm")
    store.apply([record(key="u1", at=5, name="new")])
    [late] = store.apply([record(key="u1", at=1, name="old")])
    assert late.outcome == "unchanged" and store.get("u1")["name"] == "new"


def test_delete_is_not_undone_by_a_late_update(make_store):
    store = make_store("crm")
    store.apply([record(key="u1", at=1, name="Ada"), record(key="u1", at=3, op="delete")])
    store.apply([record(key="u1", at=2, name="late")])
    view = store.get("u1")
    assert view["deleted"] is True and "name" not in view


def test_one_bad_record_fails_alone(make_store):
    store = make_store("crm")
    good1 = record(key="u1", at=1, name="A")
    wrong_destination = record("marketing", key="u2", at=1, name="B")
    good2 = record(key="u3", at=1, name="C")
    results = store.apply([good1, wrong_destination, good2])
    assert [r.ok for r in results] == [True, False, True]
    assert "cannot go to the crm store" in results[1].error
    assert store.get("u1") and store.get("u3") and store.get("u2") is None
    # The failed record was rolled back completely, so its retry is not a "duplicate".
    assert store.applied_count() == 2


def test_analytics_appends_events_per_pseudonym(make_store):
    store = make_store("analytics")
    subject = pseudonym("user-1", b"0123456789abcdef")
    e1, e2 = uuid.uuid4(), uuid.uuid4()
    r1 = record(
        "analytics",
        key=str(e1),
        at=1,
        op="append",
        event_id=e1,
        subject=subject,
        event_type="UserCreated",
    )
    r2 = record(
        "analytics",
        key=str(e2),
        at=2,
        op="append",
        event_id=e2,
        subject=subject,
        event_type="UserDeleted",
    )
    store.apply([r2, r1, r1])
    view = store.get(subject)
    assert [e["event_type"] for e in view["events"]] == ["UserCreated", "UserDeleted"]
    assert store.applied_count() == 2


def test_state_survives_reopening(make_store):
    make_store("marketing").apply(
        [record("marketing", key="u1", at=1, email="a@example.com", subscribed=True)]
    )
    assert make_store("marketing").get("u1")["email"] == "a@example.com"


def test_a_failure_reason_does_not_quote_the_records_values(make_store, monkeypatch):
    store = make_store("crm")

    def choke(sql, record):  # as drivers do, the error quotes what it was given
        raise ValueError(f"cannot store {record.fields['email']!r}")

    monkeypatch.setattr(store, "_merge", choke)
    [result] = store.apply([record(key="u1", at=1, email="ada@example.com")])
    assert result.error == "ValueError: cannot store '<redacted>'"


def test_a_hidden_marketing_detail_is_forgotten_after_its_retention_only(make_store):
    from datetime import UTC, datetime, timedelta

    from datasync.contract.consent import HIDDEN_DETAIL_RETENTION_SECONDS

    store = make_store("marketing")
    key = f"user-{uuid.uuid4()}"
    removal = {"subscribed": False, "email": None, "name": None, "country": None}
    store.apply([record("marketing", key=key, at=1, **removal)])
    store.apply([record("marketing", key=key, at=2, country="IE")])  # while opted out: hidden
    other = f"user-{uuid.uuid4()}"
    store.apply([record("marketing", key=other, at=1, subscribed=True, email="a@example.com",
                        name="Ada", country="GB")])  # fmt: skip

    assert store.forget_expired_hidden() == 0  # within the retention: kept (unseen)
    assert store.state(key).fields["country"] == "IE"
    later = datetime.now(UTC) + timedelta(seconds=HIDDEN_DETAIL_RETENTION_SECONDS + 1)
    assert store.forget_expired_hidden(now=later) == 1
    assert store.state(key).fields["country"] is None
    assert store.state(other).fields["email"] == "a@example.com"  # subscribed: untouched
    assert store.forget_expired_hidden(now=later) == 0  # forgotten once, for good


def test_an_opt_in_arriving_late_shows_a_detail_written_after_it(make_store):
    from datetime import UTC, datetime, timedelta

    from datasync.contract.consent import HIDDEN_DETAIL_RETENTION_SECONDS

    store = make_store("marketing")
    key = f"user-{uuid.uuid4()}"
    removal = {"subscribed": False, "email": None, "name": None, "country": None}
    store.apply([record("marketing", key=key, at=1, **removal)])
    store.apply([record("marketing", key=key, at=3, country="IE")])  # arrives first
    store.apply([record("marketing", key=key, at=2, subscribed=True, email="a@example.com",
                        name="Ada", country=None)])  # fmt: skip
    fields = store.state(key).fields
    assert fields["subscribed"] is True and fields["country"] == "IE"
    later = datetime.now(UTC) + timedelta(seconds=HIDDEN_DETAIL_RETENTION_SECONDS + 1)
    assert store.forget_expired_hidden(now=later) == 0  # nothing is hidden any more
    assert store.state(key).fields["country"] == "IE"
