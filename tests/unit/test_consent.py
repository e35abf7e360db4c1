"""Marketing consent holds in any arrival order: the store ends where the ordered history does.

The property: take any history of valid profile changes of one user, turn each into the marketing
record the transform would produce, deliver the records in any order with duplicates, and the
merged state must equal the one reached by applying the changes one by one, in time order,
erasing contact details whenever the person is not subscribed. A reordering that lets a detail
written while unsubscribed survive an opt-in (or erases one it should keep) fails here.

And at every point of the deliveries, a reader sees what the changes delivered so far say, in
time order: nobody, unless the latest consent among them was a yes. Histories need not start with
the registration (a user marketing never heard of), and the registration may arrive last: an
update with a name or an email is then all marketing holds, and it must show nobody.
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
from datasync.core.stores.merge import StoredState, absence, merge, public_view
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
    """A user's changes in time order: most start with the registration, some never had one."""
    changes = draw(st.lists(change(), max_size=8))
    if not draw(st.booleans()):
        return changes
    registration = {
        "email": draw(emails),
        "name": draw(names),
        "marketing_opt_in": draw(st.booleans()),
        "country": draw(countries),
        "attributes": None,
    }
    return [registration, *changes]


def ordered(changes) -> dict:
    """The specification: each change applied in time order, consent enforced after each."""
    state: dict = {}
    for changed in changes:
        learned = marketing_fields(changed)
        if learned is not None:
            state = enforce({**state, **learned})
    return state


def ordered_view(changes) -> dict | None:
    """The specification of what a reader sees: nobody unless the latest consent, in time
    order, was a yes; then the contact details as the changes left them."""
    consent = None
    for changed in changes:
        consent = changed.get("marketing_opt_in", consent)
    if consent is not True:
        return None
    state = ordered(changes)
    return {name: state.get(name) for name in CONTACT_FIELDS}


def reader_view(state: StoredState) -> dict | None:
    """What `datasync get marketing` shows of a stored state (None: absent)."""
    if absence("marketing", state) is not None:
        return None
    shown = public_view("u", state)
    return {name: shown.get(name) for name in CONTACT_FIELDS}


@settings(max_examples=400, deadline=None)
@given(changes=history(), seed=st.integers())
def test_any_arrival_order_reaches_the_ordered_state(changes, seed):
    for changed in changes:
        assert opt_in_problem(changed, changed.get("marketing_opt_in")) is None
    records = {}  # time -> the record of the change made then
    for at, changed in enumerate(changes):
        learned = marketing_fields(changed)
        if learned is not None:
            records[at] = record("marketing", key="u", at=at, **learned)
    rng = random.Random(seed)
    deliveries = list(records.items())
    deliveries += rng.sample(deliveries, k=min(2, len(deliveries)))
    rng.shuffle(deliveries)
    state, delivered = StoredState(), set()
    for at, r in deliveries:
        state = merge(state, r) or state
        delivered.add(at)
        so_far = [changes[t] for t in sorted(delivered)]
        assert reader_view(state) == ordered_view(so_far), f"after {len(delivered)} of them"
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


def test_a_contact_whose_consent_is_unknown_is_absent_and_shows_no_details():
    """An update with a name or an email before the registration arrived, or for a user
    marketing never heard of: marketing holds the details, and shows them to nobody."""
    update = record(
        "marketing", key="u", at=2, **marketing_fields({"name": "Ada", "email": "a@x.io"})
    )
    state = merge(StoredState(), update)
    assert state.fields == {"name": "Ada", "email": "a@x.io"}  # kept: the opt-in may follow
    assert absence("marketing", state) == "not subscribed"
    assert reader_view(state) is None
    registration = {"email": "a@x.io", "name": "A", "marketing_opt_in": True, "country": "GB"}
    state = merge(state, record("marketing", key="u", at=1, **marketing_fields(registration)))
    assert reader_view(state) == {"email": "a@x.io", "name": "Ada", "country": "GB"}


def test_a_no_is_a_removal_of_every_contact_detail():
    assert removal() == {"subscribed": False, **dict.fromkeys(CONTACT_FIELDS)}
    assert marketing_fields({"marketing_opt_in": False, "name": "x"}) == removal()


def test_opting_in_needs_email_and_name():
    assert opt_in_problem({"marketing_opt_in"}, True)
    assert opt_in_problem({"marketing_opt_in", "email"}, True)
    assert opt_in_problem({"marketing_opt_in", "email", "name"}, True) is None
    assert opt_in_problem({"name"}, None) is None
