"""How a record changes a stored state: pure functions, so ordering rules are testable alone.

State is merged field by field, last writer wins per field, where "last" is the record's
``version`` (event time, then event id). So records may arrive in any order, any number of
times, and the result is the same: an older update never overwrites a newer value, two
partial updates to different fields both survive, and a delete is final (erasure must not
be undone by a late update).

Marketing merges the same way: consent is applied when a state is *read*, not while merging
(see datasync/contract/consent.py for why; erasing at merge time made the result depend on the
arrival order). ``forget_hidden`` erases for good what nobody may see, after a while.

What a reader sees is decided here too: an erased user, and a marketing contact who is not
subscribed, are absent to the person asking (``absence``); the versions and the tombstone are
internals (``internal_view``), shown only on request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from datasync.contract import Destination, DestinationRecord, consent


@dataclass(frozen=True)
class StoredState:
    fields: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    deleted_version: str | None = None

    @property
    def deleted(self) -> bool:
        return self.deleted_version is not None


def merge(current: StoredState, record: DestinationRecord) -> StoredState | None:
    """The new state after ``record``, or None when the record changes nothing."""
    if current.deleted:
        return None
    if record.op == "delete":
        return StoredState(deleted_version=record.version)
    fields, versions = dict(current.fields), dict(current.versions)
    for name, value in record.fields.items():
        if record.version > versions.get(name, ""):
            fields[name] = value
            versions[name] = record.version
    if fields == current.fields and versions == current.versions:
        return None
    return StoredState(fields=fields, versions=versions)


def forget_hidden(state: StoredState) -> StoredState | None:
    """``state`` with the contact details nobody may see erased, or None if there are none."""
    if state.deleted or not consent.hidden_details(state.fields):
        return None
    return StoredState(consent.forget_hidden(state.fields), state.versions)


def erased_at(state: StoredState) -> str | None:
    """When the user was erased: the time part of the delete's version (time#event_id)."""
    return state.deleted_version.split("#", 1)[0] if state.deleted_version else None


def absence(destination: Destination, state: StoredState | None) -> str | None:
    """Why a key is absent to the person asking, or None when it is present."""
    if state is None:
        return "no record"
    if state.deleted:
        return f"erased at {erased_at(state)}"
    if destination == consent.CONSENT_DESTINATION and not consent.is_subscribed(state.fields):
        return "not subscribed"
    return None


def public_view(key: str, state: StoredState) -> dict[str, Any]:
    """What `datasync get` shows of a present key: its values as anyone may see them."""
    return {"key": key, **consent.enforce(state.fields)}


def internal_view(key: str, state: StoredState) -> dict[str, Any]:
    """The stored state as is: values, the version each came from, the tombstone."""
    if state.deleted:
        return {"key": key, "deleted": True, "deleted_version": state.deleted_version}
    return {"key": key, "deleted": False, **state.fields, "_versions": state.versions}
