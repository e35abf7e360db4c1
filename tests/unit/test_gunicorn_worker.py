"""The request deadline of apps/api/gunicorn_worker.py on a real socket pair.

(The worker itself, with gunicorn around it, is tested against slow clients in
tests/integration/test_api_hostile.py.)
"""

import json
import socket
import threading
import time

import pytest
from gunicorn.http.errors import NoMoreData

from apps.api.gunicorn_worker import DeadlineSocket, RequestTimeout, problem_response
from apps.api.headers import SECURITY_HEADERS


@pytest.fixture
def pair():
    server, client = socket.socketpair()
    adopted = DeadlineSocket.adopt(server)
    yield adopted, client
    adopted.close()
    client.close()


def test_a_read_ends_at_the_deadline(pair):
    server, _ = pair
    server.arm(0.3)
    started = time.monotonic()
    with pytest.raises(RequestTimeout) as info:
        server.recv(10)
    assert 0.25 < time.monotonic() - started < 1.0
    # gunicorn closes the connection quietly on NoMoreData; werkzeug sees a TimeoutError
    assert isinstance(info.value, NoMoreData) and isinstance(info.value, TimeoutError)


@pytest.mark.timeout(10)  # a deadline that moves with each byte would never end
def test_a_trickle_does_not_move_the_deadline(pair):
    server, client = pair
    server.arm(0.5)
    stop = threading.Event()

    def trickle():
        while not stop.wait(0.05):
            client.send(b"x")

    threading.Thread(target=trickle, daemon=True).start()
    started = time.monotonic()
    received = b""
    try:
        with pytest.raises(RequestTimeout):
            while True:
                received += server.recv(1)
    finally:
        stop.set()
    assert received and time.monotonic() - started < 1.0


def test_a_callers_shorter_timeout_still_holds_and_is_kept(pair):
    server, _ = pair
    server.arm(10)
    server.settimeout(0.1)
    started = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        server.recv(10)
    assert not isinstance(info.value, RequestTimeout)
    assert time.monotonic() - started < 1.0 and server.gettimeout() == 0.1


def test_the_callers_timeout_is_what_the_socket_keeps(pair):
    server, client = pair
    server.arm(0.5)
    server.settimeout(5)
    client.send(b"x")
    assert server.recv(1) == b"x"
    assert server.gettimeout() == 5  # not the 0.5 s that was left of the deadline


def test_each_request_gets_a_new_deadline_and_writes_are_not_cut_by_it(pair):
    server, client = pair
    server.arm(0.1)
    time.sleep(0.15)
    with pytest.raises(RequestTimeout):
        server.recv(1)
    server.arm(5)
    client.send(b"next")
    assert server.recv(4) == b"next"
    time.sleep(0.01)
    server.sendall(b"answer")
    assert server.answered and client.recv(6) == b"answer"


def test_the_workers_own_answers_are_problem_json_with_the_security_headers():
    raw = problem_response(408, "Request Timeout", "The request took too long.").decode()
    head, _, body = raw.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 408 Request Timeout\r\n")
    assert "Content-Type: application/problem+json" in head and "Connection: close" in head
    assert all(f"{name}: {value}" in head for name, value in SECURITY_HEADERS.items())
    assert json.loads(body)["status"] == 408
    assert f"Content-Length: {len(body)}" in head


def test_a_new_worker_probes_the_bus_once_before_its_first_request(app, publisher, monkeypatch):
    """post_worker_init warms the worker: its SDK client and a pooled connection are ready
    before traffic (the probe is the readiness one: bounded, cached)."""
    monkeypatch.setenv("DATASYNC_ENV", "local")  # the config checks the keys when imported
    from apps.api import gunicorn_conf

    worker = type("Worker", (), {"wsgi": app})()
    gunicorn_conf.post_worker_init(worker)
    assert publisher.probes == 1
    assert worker.request_timeout == gunicorn_conf._settings.api_request_timeout_seconds
    assert worker.first_byte_timeout == gunicorn_conf._settings.api_first_byte_timeout_seconds
    assert app.test_client().get("/readyz").status_code == 200 and publisher.probes == 1
