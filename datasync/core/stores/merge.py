"""How a record changes a stored state: pure functions, so ordering rules are testable alone.

State is merged field by field, last writer wins per field, where "last" is the record's
``version`` (event time, then event id). So records may arrive in any order, any number of
times, and the result is the same: an older update never overwrites a newer value, two
partial updates to different fields both survive, and a delete is final (erasure must not
be undone by a late update).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from datasync.contract import Destination, DestinationRecord
from datasync.core.transforms import MARKETING_FIELDS


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
    fields = _apply_policy(record.destination, fields)
    if fields == current.fields and versions == current.versions:
        return None
    return StoredState(fields=fields, versions=versions)


def _apply_policy(destination: Destination, fields: dict[str, Any]) -> dict[str, Any]:
    # Marketing may hold contact details only while the person has not said no.
    if destination == "marketing" and fields.get("subscribed") is False:
        return {**fields, **{name: None for name in MARKETING_FIELDS}}
    return fields


def public_view(key: str, state: StoredState) -> dict[str, Any]:
    """What `datasync get` shows: the values, plus the version each came from."""
    if state.deleted:
        return {"key": key, "deleted": True, "deleted_version": state.deleted_version}
    return {"key": key, "deleted": False, **state.fields, "_versions": state.versions}
