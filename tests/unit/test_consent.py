"""Marketing consent holds in any arrival order: the store ends where the ordered history does.

The property: take any history of valid profile changes of one user, turn each into the marketing
record the transform would produce, deliver the records in any order with duplicates, and the
merged state must equal the one reached by applying the changes one by one, in time order,
erasing contact details whenever the person is not subscribed. A reordering that lets a detail
written while unsubscribed survive an opt-in (or erases one it should keep) fails here.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from datasync.contract.consent import (
    CONTACT_FIELDS,
    enforce,
    marketing_fields,
    opt_in_problem,
    removal,
)
from datasync.core.stores.merge import StoredState, merge
from tests.builders import record

emails = st.sampled_from(["a@example.com", "b@example.com"])
names = st.sampled_from(["Ada", "Augusta"])
countries = st.sampled_from(["GB", "IE", None])


@st.composite
def change(draw):
    """One API-valid change of a user's profile (opting in carries email and name)."""
    kind = draw(st.sampled_from(["opt_in", "opt_out", "email", "name", "country", "other"]))
    if kind == "opt_in":
        fields = {"marketing_opt_in": True, "email": draw(emails), "name": draw(names)}
        if draw(st.booleans()):
            fields["country"] = draw(countries)
        return fields
    if kind == "opt_out":
        return {"marketing_opt_in": False}
    if kind == "other":
        return {"attributes": {"plan": "pro"}}
    return {kind: draw({"email": emails, "name": names, "country": countries}[kind])}


@st.composite
def history(draw):
    registration = {
        "email": draw(emails),
        "name": draw(names),
        "marketing_opt_in": draw(st.booleans()),
        "country": draw(countries),
        "attributes": None,
    }
    return [registration, *draw(st.lists(change(), max_size=8))]


def ordered(changes) -> dict:
    """The specification: each change applied in time order, consent enforced after each."""
    state: dict = {}
    for changed in changes:
        learned = marketing_fields(changed)
        if learned is not None:
            state = enforce({**state, **learned})
    return state


@settings(max_examples=400, deadline=None)
@given(changes=history(), seed=st.integers())
def test_any_arrival_order_reaches_the_ordered_state(changes, seed):
    for changed in changes[1:]:
        assert opt_in_problem(changed, changed.get("marketing_opt_in")) is None
    records = []
    for at, changed in enumerate(changes):
        learned = marketing_fields(changed)
        if learned is not None:
            records.append(record("marketing", key="u", at=at, **learned))
    rng = random.Random(seed)
    deliveries = records + rng.sample(records, k=min(2, len(records)))
    rng.shuffle(deliveries)
    state = StoredState()
    for r in deliveries:
        state = merge(state, r) or state
    want = ordered(changes)
    seen = enforce(state.fields)
    assert {k: seen.get(k) for k in want} == want


def test_a_detail_changed_while_unsubscribed_does_not_survive_a_later_opt_in():
    """The case the reconciliation found: country set while opted out, opt-in arriving first."""
    changes = [
        {"email": "a@example.com", "name": "Ada", "marketing_opt_in": False, "country": "GB"},
        {"country": "IE"},
        {"marketing_opt_in": True, "email": "a@example.com", "name": "Ada"},
    ]
    first, country, opt_in = (
        record("marketing", key="u", at=at, **marketing_fields(c)) for at, c in enumerate(changes)
    )
    state = StoredState()
    for r in (first, opt_in, country):
        state = merge(state, r) or state
    assert ordered(changes)["country"] is None
    assert enforce(state.fields)["country"] is None


def test_a_no_is_a_removal_of_every_contact_detail():
    assert removal() == {"subscribed": False, **dict.fromkeys(CONTACT_FIELDS)}
    assert marketing_fields({"marketing_opt_in": False, "name": "x"}) == removal()


def test_opting_in_needs_email_and_name():
    assert opt_in_problem({"marketing_opt_in"}, True)
    assert opt_in_problem({"marketing_opt_in", "email"}, True)
    assert opt_in_problem({"marketing_opt_in", "email", "name"}, True) is None
    assert opt_in_problem({"name"}, None) is None
