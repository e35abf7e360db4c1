import random

from hypothesis import given, settings
from hypothesis import strategies as st

from datasync.contract.consent import enforce
from datasync.core.stores.merge import StoredState, forget_hidden, merge
from tests.builders import record


def apply_all(records, start=None):
    state = start or StoredState()
    for r in records:
        state = merge(state, r) or state
    return state


def test_newer_value_wins_regardless_of_arrival_order():
    older, newer = record(at=1, name="old"), record(at=2, name="new")
    assert apply_all([older, newer]).fields["name"] == "new"
    assert apply_all([newer, older]).fields["name"] == "new"


def test_partial_updates_to_different_fields_both_survive_out_of_order():
    name, country = record(at=1, name="Ada"), record(at=2, country="GB")
    assert apply_all([country, name]).fields == {"name": "Ada", "country": "GB"}


def test_replaying_a_record_changes_nothing():
    r = record(at=1, name="Ada")
    state = apply_all([r])
    assert merge(state, r) is None


def test_delete_is_final_even_for_later_updates():
    deleted = apply_all([record(at=1, name="Ada"), record(at=2, op="delete")])
    assert deleted.deleted and deleted.fields == {}
    assert merge(deleted, record(at=1.5, name="late")) is None
    assert merge(deleted, record(at=3, name="after")) is None


def test_marketing_forgets_contact_details_on_removal_and_keeps_them_forgotten():
    subscribed = apply_all(
        [record("marketing", at=1, email="a@example.com", name="Ada", subscribed=True)]
    )
    removed = merge(
        subscribed, record("marketing", at=2, subscribed=False, email=None, name=None, country=None)
    )
    assert removed.fields["email"] is None and removed.fields["subscribed"] is False
    # A newer name change while unsubscribed must not bring personal data back: nobody sees it,
    # and once its retention is over it is forgotten for good.
    renamed = merge(removed, record("marketing", at=3, name="Augusta")) or removed
    assert enforce(renamed.fields)["name"] is None
    assert forget_hidden(renamed).fields["name"] is None
    assert forget_hidden(removed) is None  # nothing hidden: nothing to forget
    # Opting in again (with contact details) restores them.
    again = merge(
        renamed, record("marketing", at=4, email="a@example.com", name="Ada", subscribed=True)
    )
    assert again.fields["email"] == "a@example.com" and again.fields["subscribed"] is True


field_updates = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=50),  # time
        st.sampled_from(["name", "country", "email"]),
        st.text(min_size=1, max_size=5),
    ),
    min_size=1,
    max_size=12,
    unique_by=lambda t: t[0],
)


@settings(max_examples=200, deadline=None)
@given(
    updates=field_updates, delete_at=st.one_of(st.none(), st.integers(0, 60)), seed=st.integers()
)
def test_any_order_with_duplicates_converges_to_the_time_ordered_result(updates, delete_at, seed):
    records = [record(at=t, **{field: value}) for t, field, value in updates]
    if delete_at is not None:
        records.append(record(at=delete_at + 0.5, op="delete"))
    in_time_order = sorted(records, key=lambda r: r.version)
    expected = apply_all(in_time_order)

    rng = random.Random(seed)
    shuffled = records + rng.sample(records, k=min(3, len(records)))  # duplicates
    rng.shuffle(shuffled)
    assert apply_all(shuffled) == expected
