"""Version 1: each destination's tables, as consumers created them before migrations existed.

A migration is history: it names what existed then (analytics was the log, marketing kept
consent), not what the code says today.
"""

from __future__ import annotations

VERSION = 1
DESCRIPTION = "create the applied-events table and the records (or analytics log) table"


def statements(destination: str) -> list[str]:
    p = f"datasync_{destination}"
    found = [
        f"CREATE TABLE IF NOT EXISTS {p}_applied_events"
        " (event_id TEXT PRIMARY KEY, applied_at TEXT NOT NULL)",
    ]
    if destination == "analytics":
        found += [
            f"CREATE TABLE IF NOT EXISTS {p}_log (event_id TEXT PRIMARY KEY,"
            " subject TEXT NOT NULL, version TEXT NOT NULL, fields TEXT NOT NULL)",
            f"CREATE INDEX IF NOT EXISTS {p}_log_subject ON {p}_log (subject)",
        ]
    else:
        found.append(
            f"CREATE TABLE IF NOT EXISTS {p}_records (key TEXT PRIMARY KEY,"
            " fields TEXT NOT NULL, versions TEXT NOT NULL, deleted_version TEXT,"
            " updated_at TEXT NOT NULL)"
        )
    if destination == "marketing":
        found += [
            f"CREATE TABLE IF NOT EXISTS {p}_hidden"
            " (key TEXT PRIMARY KEY, forget_after TEXT NOT NULL)",
            f"CREATE INDEX IF NOT EXISTS {p}_hidden_due ON {p}_hidden (forget_after)",
        ]
    return found
