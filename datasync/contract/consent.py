"""Marketing consent, in one place: when the marketing destination may hold contact details.

The rules, used by the API (validation), the marketing transform and the marketing store:
- marketing holds ``email``, ``name`` and ``country`` only of people who opted in;
- a "no" (registering without opting in, or opting out later) is a *removal*: the contact
  details are erased, but the person may opt in again, so it is not a terminal delete;
- opting in needs ``email`` and ``name`` in the same change, because after a removal marketing
  no longer has them and cannot recover them from a later partial update;
- opting in *sets the whole contact*: a contact field the opt-in does not carry (``country``)
  becomes unknown. This is what makes the rules hold in any arrival order: a detail changed
  while the person was unsubscribed is erased when it arrives in order, so it must not survive
  when it arrives after a later opt-in either (the opt-in's newer version overwrites it);
- nobody sees the contact details of a person who is not subscribed, whatever order the
  records arrived in.

Why the store keeps a detail it does not show, for a while: records arrive out of order. A
detail written after an opt-out is hidden; but if an opt-in that was written *before* it is still
on its way, the history says the detail was written while subscribed, and it must show once that
opt-in arrives. Erasing it at once would make the outcome depend on arrival order. So marketing
merges every field by version (last writer wins, like any other store), decides visibility when
it is read, and forgets a hidden detail for good ``HIDDEN_DETAIL_RETENTION_SECONDS`` after it
arrived. An opt-in later than that (a DLQ redrive hours later) finds the detail forgotten:
marketing then lacks it rather than holding it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

CONTACT_FIELDS = ("email", "name", "country")
FIELDS_NEEDED_TO_OPT_IN = frozenset({"email", "name"})
SUBSCRIBED = "subscribed"
# The destination these rules govern.
CONSENT_DESTINATION = "marketing"
# Covers the pipeline's own retries (visibility backoff up to 300 s over 5 deliveries, Lambda
# retries, the supervisor's restarts) with a wide margin.
HIDDEN_DETAIL_RETENTION_SECONDS = 3600


def opt_in_problem(fields_sent: Collection[str], marketing_opt_in: bool | None) -> str | None:
    """Why a change that opts in cannot be accepted, or None when it can."""
    if marketing_opt_in and not FIELDS_NEEDED_TO_OPT_IN <= set(fields_sent):
        return "marketing_opt_in=true needs email and name in the same request"
    return None


def removal() -> dict[str, Any]:
    """The marketing fields of a person who said no: unsubscribed, contact details erased."""
    return {SUBSCRIBED: False, **dict.fromkeys(CONTACT_FIELDS)}


def marketing_fields(changed: Mapping[str, Any]) -> dict[str, Any] | None:
    """What marketing learns from a change of a user's profile (None: nothing for marketing)."""
    opt_in = changed.get("marketing_opt_in")
    if opt_in is False:
        return removal()
    if opt_in is True:
        return {SUBSCRIBED: True, **{name: changed.get(name) for name in CONTACT_FIELDS}}
    contact = {name: changed[name] for name in CONTACT_FIELDS if name in changed}
    return contact or None


def enforce(fields: dict[str, Any]) -> dict[str, Any]:
    """A contact's fields as anyone may see them: contact details erased unless subscribed."""
    if fields.get(SUBSCRIBED) is False:
        return {**fields, **dict.fromkeys(CONTACT_FIELDS)}
    return fields


def hidden_details(fields: Mapping[str, Any]) -> list[str]:
    """The contact fields that hold a value nobody may see (the person is not subscribed)."""
    if fields.get(SUBSCRIBED) is True:
        return []
    return [name for name in CONTACT_FIELDS if fields.get(name) is not None]


def forget_hidden(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields with every hidden detail erased (the versions that wrote them stay)."""
    return {**fields, **dict.fromkeys(hidden_details(fields))}


def is_subscribed(fields: Mapping[str, Any]) -> bool:
    return fields.get(SUBSCRIBED) is True
