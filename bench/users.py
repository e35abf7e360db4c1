"""Realistic users for the API, and the same users as bus events for the bursts (seeded).

A POST /v1/users body as a sign-up form sends it: a name, an email on a reserved domain, an
opt-in choice (about half say yes), usually a country, sometimes a few attributes. The bus
events are what the API would publish for that body (contract version 1, source
``datasync.api``), so the Lambdas and stores do the same work per event as for API traffic.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime
from typing import Any

FIRST = (
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Donald",
    "Margaret",
    "Ken",
    "Frances",
    "John",
    "Radia",
    "Tim",
    "Sophie",
    "Linus",
    "Hedy",
    "Claude",
    "Katherine",
    "Dennis",
)
LAST = (
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Hamilton",
    "Thompson",
    "Allen",
    "McCarthy",
    "Perlman",
    "Berners-Lee",
    "Wilson",
    "Torvalds",
    "Lamarr",
    "Shannon",
    "Johnson",
    "Ritchie",
)
COUNTRIES = ("GB", "FR", "DE", "US", "NL", "ES", "IT", "SE", "PL", "IE", "PT", "BE")
DOMAINS = ("example.com", "example.org", "example.net")
PLANS = ("free", "pro", "team")
SOURCE = "datasync.api"


def user_profile(rng: random.Random, index: int) -> dict[str, Any]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    profile: dict[str, Any] = {
        "email": f"{first}.{last}.{index}@{rng.choice(DOMAINS)}".lower(),
        "name": f"{first} {last}",
        "marketing_opt_in": rng.random() < 0.5,
    }
    if rng.random() < 0.9:
        profile["country"] = rng.choice(COUNTRIES)
    if rng.random() < 0.3:
        profile["attributes"] = {"plan": rng.choice(PLANS), "signup_source": "web"}
    return profile


def user_profiles(seed: int, count: int, start: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    return [user_profile(rng, start + i) for i in range(count)]


def user_created_event(profile: dict[str, Any], run_id: str, index: int) -> dict[str, Any]:
    """The contract-v1 UserCreated envelope the API would publish for ``profile``.

    Ids are random, not seeded: a store keeps every event id it applied, so an id reused by a
    later run against the same stores would count as a duplicate, never as applied.
    """
    return {
        "event_id": str(uuid.uuid4()),
        "schema_version": 1,
        "occurred_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "correlation_id": f"bench-{run_id}-{index}",
        "event_type": "UserCreated",
        "data": {"user_id": str(uuid.uuid4()), **profile},
    }


def bus_entries(seed: int, count: int, bus_name: str, run_id: str) -> list[dict[str, Any]]:
    """PutEvents entries (and so event ids) for ``count`` new users."""
    entries = []
    for i, profile in enumerate(user_profiles(seed, count)):
        event = user_created_event(profile, run_id, i)
        entries.append(
            {
                "Source": SOURCE,
                "DetailType": event["event_type"],
                "Detail": json.dumps(event),
                "EventBusName": bus_name,
            }
        )
    return entries


def event_id_of(entry: dict[str, Any]) -> str:
    return json.loads(entry["Detail"])["event_id"]
