"""Marketing consent, in one place: when the marketing destination may hold contact details.

The rules, used by the API (validation), the marketing transform and the marketing store:
- marketing holds ``email``, ``name`` and ``country`` only of people who opted in;
- a "no" (registering without opting in, or opting out later) is a *removal*: the contact
  details are erased, but the person may opt in again, so it is not a terminal delete;
- opting in needs ``email`` and ``name`` in the same change, because after a removal marketing
  no longer has them and cannot recover them from a later partial update;
- a stored contact that is not subscribed holds no contact details, whatever order the
  records arrived in.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

CONTACT_FIELDS = ("email", "name", "country")
FIELDS_NEEDED_TO_OPT_IN = frozenset({"email", "name"})
SUBSCRIBED = "subscribed"


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
    contact = {name: changed[name] for name in CONTACT_FIELDS if name in changed}
    if opt_in is True:
        contact[SUBSCRIBED] = True
    return contact or None


def enforce(fields: dict[str, Any]) -> dict[str, Any]:
    """A stored contact's fields with the contact details erased unless subscribed."""
    if fields.get(SUBSCRIBED) is False:
        return {**fields, **dict.fromkeys(CONTACT_FIELDS)}
    return fields


def is_subscribed(fields: Mapping[str, Any]) -> bool:
    return fields.get(SUBSCRIBED) is True
