"""The metrics of a running stack: the API's on its own port (gunicorn's multiprocess mode),
each consumer's next to its /healthz, counting exactly what was sent."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from datasync.contract import DESTINATIONS
from tests import flows
from tests.pipeline import wait_until

pytestmark = pytest.mark.integration
USERS = 4


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_api_and_consumer_metrics_count_what_was_sent(pipeline, stack):
    env = stack.app_environment()
    api_url = env["DATASYNC_API_METRICS_URL"]
    consumer_urls = dict(
        item.split("=", 1) for item in env["DATASYNC_CONSUMER_METRICS_URLS"].split(",")
    )
    assert set(consumer_urls) == set(DESTINATIONS)
    created = ("datasync_api_requests_total", frozenset(
        {"route": "/v1/users", "method": "POST", "status": "202"}.items()))  # fmt: skip
    accepted = ("datasync_api_publish_total", frozenset({"outcome": "accepted"}.items()))

    def applied(destination: str) -> tuple[float, float]:
        samples = scrape(consumer_urls[destination])
        labels = {"destination": destination}
        outcome = frozenset({**labels, "outcome": "applied"}.items())
        return (
            samples.get(("datasync_consumer_records_total", outcome), 0.0),
            samples.get(("datasync_consumer_lag_seconds_count", frozenset(labels.items())), 0.0),
        )

    api_before = scrape(api_url)
    before = {destination: applied(destination) for destination in DESTINATIONS}
    users = [
        pipeline.create_user(
            email=flows.unique_email("metrics"), name="Metric", marketing_opt_in=True
        )["user_id"]
        for _ in range(USERS)
    ]
    api_after = scrape(api_url)
    assert api_after[created] - api_before.get(created, 0.0) == USERS
    assert api_after[accepted] - api_before.get(accepted, 0.0) == USERS
    assert api_after[("datasync_api_circuit_open", frozenset())] == 0
    for destination in DESTINATIONS:
        for user_id in users:
            wait_until(lambda d=destination, u=user_id: pipeline.get(d, u), what=destination)
    for destination in DESTINATIONS:
        # The store has them: the consumer counted them as it committed them.
        count, lag = wait_until(
            lambda d=destination: (now := applied(d))[0] - before[d][0] >= USERS and now,
            timeout=10,
            what=f"{destination} applied count",
        )
        assert (count - before[destination][0], lag - before[destination][1]) == (USERS, USERS)
        assert (
            scrape(consumer_urls[destination])[
                (
                    "datasync_consumer_seconds_since_poll",
                    frozenset({"destination": destination}.items()),
                )
            ]
            < 30
        )
