"""How a record changes a stored state: pure functions, so ordering rules are testable alone.

State is merged field by field, last writer wins per field, where "last" is the record's
``version`` (event time, then event id). So records may arrive in any order, any number of
times, and the result is the same: an older update never overwrites a newer value, two
partial updates to different fields both survive, and a delete is final (erasure must not
be undone by a late update).

What a reader sees is decided here too: an erased user, and a marketing contact who is not
subscribed, are absent to the person asking (``absence``); the versions and the tombstone are
internals (``internal_view``), shown only on request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from datasync.contract import Destination, DestinationRecord
from datasync.contract.consent import enforce, is_subscribed


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
    if record.destination == "marketing":
        fields = enforce(fields)  # contact details only while subscribed, in any arrival order
    if fields == current.fields and versions == current.versions:
        return None
    return StoredState(fields=fields, versions=versions)


def erased_at(state: StoredState) -> str | None:
    """When the user was erased: the time part of the delete's version (time#event_id)."""
    return state.deleted_version.split("#", 1)[0] if state.deleted_version else None


def absence(destination: Destination, state: StoredState | None) -> str | None:
    """Why a key is absent to the person asking, or None when it is present."""
    if state is None:
        return "no record"
    if state.deleted:
        return f"erased at {erased_at(state)}"
    if destination == "marketing" and not is_subscribed(state.fields):
        return "not subscribed"
    return None


def public_view(key: str, state: StoredState) -> dict[str, Any]:
    """What `datasync get` shows of a present key: its values, no internals."""
    return {"key": key, **state.fields}


def internal_view(key: str, state: StoredState) -> dict[str, Any]:
    """The stored state as is: values, the version each came from, the tombstone."""
    if state.deleted:
        return {"key": key, "deleted": True, "deleted_version": state.deleted_version}
    return {"key": key, "deleted": False, **state.fields, "_versions": state.versions}
