"""bench/loadgen.py: requests go out on schedule, whatever earlier answers took (open loop)."""

import asyncio
import time

import pytest

from bench.loadgen import latency, open_loop, schedule


def test_schedule_spaces_requests_at_the_offered_rate():
    due = schedule(rate=200, count=5, start=1000.0)
    assert due == pytest.approx([1000.0, 1000.005, 1000.010, 1000.015, 1000.020])
    with pytest.raises(ValueError, match="positive"):
        schedule(rate=0, count=1, start=0)


def test_a_slow_server_does_not_delay_later_sends_and_its_queueing_counts():
    """A server that takes 0.3 s per answer, offered 50 req/s for 0.2 s (10 requests).

    Closed loop would send one request every 0.3 s and report 300 ms; open loop sends all ten
    within 0.2 s, each on time, and each latency (from its due time) is at least 0.3 s.
    """
    sent_at = []

    async def slow_server(i, due):
        started = time.time()
        sent_at.append(started)
        await asyncio.sleep(0.3)
        return {"i": i, "due": due, "started": started, "done": time.time(), "status": 202}

    start = time.time() + 0.05
    due = schedule(rate=50, count=10, start=start)
    results = asyncio.run(open_loop(slow_server, due))

    assert len(results) == 10
    assert max(sent_at) - start < 0.2 + 0.1  # the last one left near 0.18 s, not at 2.7 s
    for result in results:
        assert result["lag"] < 0.1  # sent close to when it was due
        assert latency(result) >= 0.3  # counted from the due time


def test_latency_includes_the_generators_own_delay():
    """If a send starts late, its latency still starts at its due time (no omission)."""

    async def late_start(i, due):
        started = due + 0.05  # as if the event loop ran this task 50 ms late
        return {"i": i, "due": due, "started": started, "done": started + 0.01, "status": 202}

    results = asyncio.run(open_loop(late_start, schedule(rate=100, count=3, start=time.time())))
    for result in results:
        assert result["lag"] == pytest.approx(0.05, abs=0.02)
        assert latency(result) == pytest.approx(0.06, abs=0.001)  # 50 ms late + 10 ms served
