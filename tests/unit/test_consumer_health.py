"""The consumer's health endpoint: liveness that a database outage does not fail, readiness that
says why the consumer is not working, and a server that idle or silent clients cannot exhaust."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from apps.consumers.health import HANDLER_THREADS, HealthServer
from apps.consumers.metrics import ConsumerMetrics


@pytest.fixture
def metrics():
    return ConsumerMetrics("crm")


@pytest.fixture
def server(metrics):
    server = HealthServer("127.0.0.1", 0, metrics, idle_timeout=1)
    yield server
    server.close()


def get(server, path, timeout=2.0):
    """(status, body) of GET path."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode().strip()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode().strip()


def test_readiness_says_why_the_store_cannot_be_used_and_liveness_stays_ok(server, metrics):
    assert get(server, "/readyz") == (503, "the store has not answered yet")
    metrics.store_reachable()
    assert get(server, "/readyz") == (200, "ready")
    # A failover: no receive for ten minutes, but the worker loop turns while it waits.
    metrics.store_unreachable("OperationalError: the database system is shutting down")
    metrics.last_poll -= 600
    metrics.progressed()
    assert get(server, "/healthz") == (200, "ok"), "a database outage must not restart consumers"
    assert get(server, "/readyz") == (
        503,
        "store unreachable: OperationalError: the database system is shutting down",
    )
    _, exposition = get(server, "/metrics")
    assert 'datasync_consumer_store_unreachable{destination="crm"} 1.0' in exposition
    metrics.store_reachable()
    assert get(server, "/readyz") == (200, "ready")
    assert get(server, "/nope")[0] == 404


def test_a_stuck_loop_is_neither_live_nor_ready(server, metrics):
    metrics.store_reachable()
    metrics.last_progress -= 3600
    assert get(server, "/healthz") == (503, "stale")
    assert get(server, "/readyz")[0] == 503


def test_a_silent_client_blocks_nobody_and_is_cut_off(server):
    silent = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        started = time.monotonic()
        assert get(server, "/healthz", timeout=1) == (200, "ok")
        assert time.monotonic() - started < 1, "another client waited for the silent one"
        silent.settimeout(10)
        cut = time.monotonic()
        assert silent.recv(1) == b"", "the server sent something to a client that asked nothing"
        assert time.monotonic() - cut < 5, "the silent client was not cut off"
    finally:
        silent.close()


def test_many_clients_at_once_use_a_fixed_number_of_threads(server, metrics):
    metrics.store_reachable()
    before = threading.active_count()
    silent = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(30)]
    answers: list[tuple[int, str]] = []
    clients = [
        threading.Thread(target=lambda: answers.append(get(server, "/healthz", timeout=5)))
        for _ in range(20)
    ]
    try:
        for client in clients:
            client.start()
        peak = threading.active_count() - len(clients)
        for client in clients:
            client.join(10)
        time.sleep(0.2)  # a server that starts a thread per connection has started them now
        peak = max(peak, threading.active_count())
    finally:
        for sock in silent:
            sock.close()
    assert answers == [(200, "ok")] * 20
    assert peak <= before, (
        f"{peak - before} more threads for 50 connections (pool {HANDLER_THREADS})"
    )
