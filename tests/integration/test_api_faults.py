"""The API when the bus hangs or refuses: fast 503s with Retry-After, never a 202 it cannot keep.

Against the real stack: the session's MiniStack is paused with SIGSTOP (a hung peer: TCP still
accepts, nothing answers), and a second API is pointed at a port where nothing listens.
"""

from __future__ import annotations

import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests import flows
from tests.api_probes import api_server, call, closed_port_url
from tests.faults import paused
from tests.pipeline import wait_until

pytestmark = pytest.mark.integration

BUDGET_BOUND = 2.5  # seconds: the 2 s publishing budget plus the request around it
CONCURRENT = 12


def signup(url: str, key: str) -> object:
    body = {"email": flows.unique_email("outage"), "name": "Outage Test"}
    return call(url, "POST", "/v1/users", body, {"X-API-Key": key})


def test_a_paused_bus_gets_fast_503s_then_202s_again_without_a_restart(pipeline, stack):
    url, key = pipeline.api_url, pipeline.api_key
    with ThreadPoolExecutor(CONCURRENT) as pool:
        with paused(stack.emulator.process.pid, 0):
            hung = list(pool.map(lambda _: signup(url, key), range(CONCURRENT)))
            # The breaker is per worker process: keep asking until both have seen enough.
            later = [signup(url, key) for _ in range(20)]
            health = call(url, "GET", "/healthz")
            ready = call(url, "GET", "/readyz")
        resumed_at = time.monotonic()
        first_202 = wait_until(
            lambda: (answer := signup(url, key)).status == 202 and answer,
            timeout=15,
            interval=0.2,
            what="a 202 after the bus resumed",
        )
        recovery = time.monotonic() - resumed_at

    for answer in hung + later:
        assert answer.status == 503, answer.body
        assert int(answer.headers["retry-after"]) >= 1
        assert answer.seconds < BUDGET_BOUND, f"{answer.seconds:.2f}s for a 503"
    fast = [a for a in later if a.seconds < 0.3 and int(a.headers["retry-after"]) >= 2]
    assert fast, "the circuit never opened: no fast 503 with the remaining cool-down"
    assert health.status == 200 and health.seconds < 0.5
    assert ready.status == 503
    assert recovery < 10, f"202s resumed only {recovery:.1f}s after the bus did"

    user_id = first_202.json()["user_id"]
    wait_until(lambda: pipeline.get("crm", user_id), what="the first event after the outage")
    _until_every_worker_publishes(url, key)
    print(
        f"\npaused bus: {CONCURRENT} concurrent 503s in "
        f"{min(a.seconds for a in hung):.2f}-{max(a.seconds for a in hung):.2f}s; "
        f"{len(fast)}/{len(later)} later ones fail-fast (max {max(a.seconds for a in fast):.3f}s); "
        f"/healthz {health.seconds:.3f}s, /readyz {ready.seconds:.2f}s; "
        f"first 202 {recovery:.1f}s after resume"
    )


def _until_every_worker_publishes(url: str, key: str) -> None:
    """Leave the session's API as we found it: each worker's breaker closed again."""
    consecutive = 0
    deadline = time.monotonic() + 30
    while consecutive < 10 and time.monotonic() < deadline:
        consecutive = consecutive + 1 if signup(url, key).status == 202 else 0
        if consecutive == 0:
            time.sleep(0.5)
    assert consecutive >= 10, "the API did not publish steadily again after the outage"


@pytest.fixture
def api_without_bus(pipeline, tmp_path):
    """A second real API whose bus endpoint refuses connections."""
    with api_server(
        pipeline.env,
        tmp_path / "api-without-bus.log",
        AWS_ENDPOINT_URL=closed_port_url(),
        DATASYNC_BREAKER_FAILURES="3",
    ) as url:
        yield url


def test_a_bus_refusing_connections_gets_503_never_202(pipeline, api_without_bus):
    key = pipeline.api_key
    answers = [signup(api_without_bus, key) for _ in range(8)]
    user_id = str(uuid.uuid4())
    answers.append(
        call(api_without_bus, "DELETE", f"/v1/users/{user_id}", headers={"X-API-Key": key})
    )
    assert [a.status for a in answers] == [503] * len(answers)
    assert all(a.seconds < BUDGET_BOUND and int(a.headers["retry-after"]) >= 1 for a in answers)
    assert call(api_without_bus, "GET", "/readyz").status == 503
    assert call(api_without_bus, "GET", "/healthz").status == 200
    print(f"\nrefused bus: 503 in {min(a.seconds for a in answers):.3f}-"
          f"{max(a.seconds for a in answers):.2f}s, never 202")  # fmt: skip


@pytest.fixture
def rate_limited_api(pipeline, tmp_path):
    with api_server(
        pipeline.env,
        tmp_path / "api-rate-limited.log",
        DATASYNC_API_RATE_LIMIT="1",
        DATASYNC_API_RATE_LIMIT_BURST="3",
        DATASYNC_API_KEYS=f"{pipeline.api_key},second-key-{os.getpid()}",
        GUNICORN_WORKERS="1",
    ) as url:
        yield url


def test_a_key_over_its_rate_gets_429_with_retry_after_and_other_keys_do_not(
    pipeline, rate_limited_api
):
    first, second = pipeline.api_key, f"second-key-{os.getpid()}"
    path = f"/v1/users/{uuid.uuid4()}"
    burst = [call(rate_limited_api, "DELETE", path, headers={"X-API-Key": first}) for _ in range(3)]
    limited = call(rate_limited_api, "DELETE", path, headers={"X-API-Key": first})
    other = call(rate_limited_api, "DELETE", path, headers={"Authorization": f"Bearer {second}"})
    assert [a.status for a in burst] == [202, 202, 202]
    assert limited.status == 429 and limited.headers["retry-after"] == "1"
    assert limited.headers["content-type"] == "application/problem+json"
    assert other.status == 202  # several keys valid at once, each with a bucket of its own
    time.sleep(1.1)
    assert call(rate_limited_api, "DELETE", path, headers={"X-API-Key": first}).status == 202
