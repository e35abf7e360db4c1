"""Hostile input against the real server (gunicorn + the project's worker and config).

Each hostile request gets a clear 4xx as problem+json, or a closed connection, and a normal
request right after it is served: the server stays healthy. Slow clients are cut off at the
configured deadline, and a normal request is served while they trickle; connections that send
nothing hold no thread and are closed after about a second.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid

import pytest
import yaml

from apps.api.headers import HSTS, SECURITY_HEADERS
from devstack.paths import ROOT
from tests import flows
from tests.api_probes import Answer, api_server, call, send_raw, silent_connections, trickle
from tests.pipeline import wait_until

pytestmark = pytest.mark.integration


def request(method: str, path: str, headers: dict[str, str] | None, body: bytes = b"") -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: api",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def post(key: str, body: bytes, content_type: str = "application/json") -> bytes:
    return request("POST", "/v1/users", {"X-API-Key": key, "Content-Type": content_type}, body)


def assert_problem(answer: Answer, status: int) -> dict:
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.headers["content-type"] == "application/problem+json"
    for name, value in SECURITY_HEADERS.items():
        assert answer.headers[name.lower()] == value
    problem = answer.json()
    assert problem["status"] == status and problem["title"]
    return problem


def assert_healthy(pipeline) -> None:
    response = pipeline.call("POST", "/v1/users", {"email": flows.unique_email("ok"), "name": "Ok"})
    assert response.status == 202, response.body


NESTED = b'{"email": ' + b"[" * 10_000 + b"]" * 10_000 + b', "name": "A"}'
CASES = {
    # body
    "invalid UTF-8": (lambda k: post(k, b'{"email": "a@example.com", "name": "\xff\xfe"}'), 400),
    "lone surrogate": (lambda k: post(k, b'{"email": "a@example.com", "name": "\\ud800"}'), 400),
    "deeply nested": (lambda k: post(k, NESTED), 400),
    "NUL in a name": (lambda k: post(k, b'{"email": "a@example.com", "name": "A\\u0000B"}'), 422),
    "bidi override": (lambda k: post(k, b'{"email": "a@example.com", "name": "A\\u202eB"}'), 422),
    "escape sequence": (
        lambda k: post(k, b'{"email": "a@example.com", "name": "A\\u001b[2J"}'),
        422,
    ),
    "confusable email": (
        lambda k: post(k, '{"email": "ada@exаmple.com", "name": "A"}'.encode()),  # Cyrillic а
        422,
    ),
    "text/plain": (lambda k: post(k, b'{"email": "a@example.com"}', "text/plain"), 415),
    "form": (lambda k: post(k, b"email=a@example.com", "application/x-www-form-urlencoded"), 415),
    "json lookalike type": (lambda k: post(k, b"{}", "application/problem+json"), 415),
    "chunked body": (
        lambda k: (
            request(
                "POST",
                "/v1/users",
                {
                    "X-API-Key": k,
                    "Content-Type": "application/json",
                    "Transfer-Encoding": "chunked",
                },
            )
            + b"2\r\n{}\r\n0\r\n\r\n"
        ),
        411,
    ),  # fmt: skip
    # headers
    "bare CR in a header": (
        lambda k: request("GET", "/healthz", {"X-Correlation-ID": "a\rb"}),
        400,
    ),
    "bare LF in a header": (
        lambda k: request("GET", "/healthz", {"X-Correlation-ID": "a\nb"}),
        400,
    ),
    "NUL in a header": (lambda k: request("GET", "/healthz", {"X-API-Key": f"{k}\x00"}), 400),
    "obsolete folding": (lambda k: request("GET", "/healthz", {"X-A": "a\r\n b"}), 400),
    "over-long header": (lambda k: request("GET", "/healthz", {"X-Long": "a" * 9000}), 431),
    "too many headers": (
        lambda k: request("GET", "/healthz", {f"X-H{i}": "1" for i in range(150)}),
        431,
    ),
    "over-long URI": (lambda k: request("GET", "/" + "a" * 5000, {}), 414),
    "bad method": (lambda k: request("G@T", "/healthz", {}), 400),
    "length and chunked": (
        lambda k: request(
            "POST", "/v1/users", {"Transfer-Encoding": "chunked", "Content-Length": "3"}
        ),
        400,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_input_gets_a_clear_4xx_and_the_server_stays_healthy(pipeline, case):
    build, status = CASES[case]
    assert_problem(send_raw(pipeline.api_url, build(pipeline.api_key)), status)
    assert_healthy(pipeline)


def test_a_huge_body_is_refused_before_it_is_read(pipeline):
    head = post(pipeline.api_key, b"").replace(
        b"\r\n\r\n", b"\r\nContent-Length: 104857600\r\n\r\n"
    )
    answer = send_raw(pipeline.api_url, head + b"{" * 100_000)
    assert_problem(answer, 413)
    assert answer.seconds < 2
    chunked = request(
        "POST", "/v1/users",
        {"X-API-Key": pipeline.api_key, "Content-Type": "application/json",
         "Transfer-Encoding": "chunked"},
    ) + b"".join(b"10000\r\n" + b" " * 0x10000 + b"\r\n" for _ in range(3)) + b"0\r\n\r\n"  # fmt: skip
    assert_problem(send_raw(pipeline.api_url, chunked), 411)  # never read, so never cut short
    assert_healthy(pipeline)


def test_an_injected_header_is_not_reflected(pipeline):
    # CRLF in a value ends the header on the wire: the "injected" part is a request header of
    # its own, and the API answers none of them back except a valid correlation id.
    injected = request("GET", "/healthz", {"X-Correlation-ID": "abc\r\nSet-Cookie: session=x"})
    answer = send_raw(pipeline.api_url, injected)
    assert answer.status == 200 and "set-cookie" not in answer.headers
    assert answer.headers["x-correlation-id"] == "abc"
    # a value the API would echo back is replaced unless it is a plain token
    odd = call(pipeline.api_url, "GET", "/healthz", headers={"X-Correlation-ID": "a b;c=d"})
    assert (
        odd.headers["x-correlation-id"] != "a b;c=d" and len(odd.headers["x-correlation-id"]) == 32
    )


@pytest.fixture
def small_api(pipeline, tmp_path):
    """One worker with two threads and a 1 s request deadline: easy to fill with slow clients."""
    log = tmp_path / "api-small.log"
    with api_server(
        pipeline.env,
        log,
        GUNICORN_WORKERS="1",
        GUNICORN_THREADS="2",
        DATASYNC_API_REQUEST_TIMEOUT_SECONDS="1",
    ) as url:
        yield url, log


def test_slow_clients_are_cut_off_at_the_deadline_and_others_are_served(pipeline, small_api):
    url, log = small_api
    key = pipeline.api_key
    slow_headers = request("GET", "/healthz", {"X-Slow": "a" * 300})
    head, _, body = post(
        key, json.dumps({"email": "a@example.com", "name": "A" * 150}).encode()
    ).partition(b"\r\n\r\n")
    answers: dict[int, Answer] = {}

    def slowly(i: int) -> None:
        if i % 2:  # the headers at once, then the body byte by byte
            answers[i] = trickle(url, body, 0.1, 30, at_once=head + b"\r\n\r\n")
        else:
            answers[i] = trickle(url, slow_headers, 0.1, 30)

    clients = [threading.Thread(target=slowly, args=(i,)) for i in range(4)]  # 2x the threads
    for client in clients:
        client.start()
    time.sleep(0.3)
    normal = call(url, "GET", "/healthz")
    published = call(
        url, "POST", "/v1/users", {"email": flows.unique_email("slow"), "name": "Between"},
        {"X-API-Key": key},
    )  # fmt: skip
    for client in clients:
        client.join(40)

    # Two slow clients hold the two threads for 1 s each, the next two for another second:
    # the normal request behind them waits for at most two deadlines, not for 30 s of trickle.
    assert normal.status == 200 and normal.seconds < 3.5, f"{normal.seconds:.2f}s"
    assert published.status == 202
    for i, answer in answers.items():
        assert answer.seconds < 4, f"slow client {i} held on for {answer.seconds:.1f}s"
        problem = assert_problem(answer, 408)
        if i % 2 == 0:  # stuck in the headers: the worker itself answered
            assert problem["detail"] == "The request took too long."
    assert "request did not arrive in time" in log.read_text()
    print(
        f"\nslow clients: 4 on 1x2 threads, 1 s deadline; cut after "
        f"{sorted(round(a.seconds, 2) for a in answers.values())} s "
        f"({sorted(a.status for a in answers.values())}); normal request {normal.seconds:.2f}s"
    )


# The server sizes the API runs with: the project's defaults (`make run`), and the chart's.
CHART_GUNICORN = yaml.safe_load((ROOT / "charts/datasync/values.yaml").read_text())["api"][
    "gunicorn"
]
SERVER_SIZES = {
    "project defaults": {},
    "the chart's": {  # what the chart sets (null: the project's default)
        name: str(CHART_GUNICORN[key])
        for name, key in (("GUNICORN_WORKERS", "workers"), ("GUNICORN_THREADS", "threads"))
        if CHART_GUNICORN[key] is not None
    },
}


@pytest.mark.parametrize("size", sorted(SERVER_SIZES))
def test_200_silent_connections_do_not_delay_a_real_request(pipeline, tmp_path, size):
    """Silent connections wait in the worker's poller and hold no thread: with 200 of them open
    (over 10 times the threads), real requests are answered at once."""
    with api_server(pipeline.env, tmp_path / "api-silent.log", **SERVER_SIZES[size]) as url:
        key = {"X-API-Key": pipeline.api_key}
        warm = call(
            url, "POST", "/v1/users", {"email": flows.unique_email("warm"), "name": "W"}, key
        )
        assert warm.status == 202
        with silent_connections(url, 200) as opened:
            time.sleep(0.3)  # the server has accepted them
            answers = [
                call(url, "POST", "/v1/users", {"email": flows.unique_email("idle"), "name": "I"}, key)
                for _ in range(5)
            ]  # fmt: skip
            held = time.monotonic() - opened
    assert [a.status for a in answers] == [202] * 5
    slowest = max(a.seconds for a in answers)
    assert held < 1, f"the silent connections were not all open throughout ({held:.2f}s)"
    assert slowest < 1, f"a request beside 200 silent connections took {slowest:.2f}s"
    print(
        f"\n200 silent connections ({size}): requests answered in {slowest * 1000:.0f} ms at most"
    )


def test_a_connection_that_sends_nothing_is_closed_after_about_a_second(pipeline):
    """DATASYNC_API_FIRST_BYTE_TIMEOUT_SECONDS (default 1) bounds how long a silent connection
    may take a file descriptor: it is closed without an answer."""
    host, port = pipeline.api_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        opened = time.monotonic()
        sock.settimeout(10)
        assert sock.recv(1) == b""  # closed, nothing written
        closed_after = time.monotonic() - opened
    assert 0.8 < closed_after < 2.0, f"closed after {closed_after:.2f}s"
    assert_healthy(pipeline)


def test_x_forwarded_proto_counts_only_from_a_trusted_proxy(pipeline, tmp_path):
    """HSTS when the request came over TLS: gunicorn would take X-Forwarded-Proto from any
    peer on 127.0.0.1; only the proxies the API trusts may say so."""
    https = {"X-Forwarded-Proto": "https"}
    untrusted = call(pipeline.api_url, "GET", "/healthz", headers=https)  # trusts no proxy
    assert untrusted.status == 200 and "strict-transport-security" not in untrusted.headers
    with api_server(
        pipeline.env, tmp_path / "api-proxied.log", DATASYNC_API_TRUSTED_PROXIES="1"
    ) as url:
        behind = call(url, "GET", "/healthz", headers={**https, "X-Forwarded-For": "203.0.113.7"})
        plain = call(url, "GET", "/healthz", headers={"X-Forwarded-For": "203.0.113.7"})
    assert behind.headers["strict-transport-security"] == HSTS
    assert "strict-transport-security" not in plain.headers


def test_no_api_key_email_or_name_reaches_any_log(pipeline, stack, tmp_path):
    """A run's logs hold ids, never a key (right or wrong), an email or a name."""
    marker = uuid.uuid4().hex[:10]
    email, name = flows.unique_email(f"logs{marker}"), f"Zebedee Quux-{marker}"
    wrong_keys = [f"wrong-key-{marker}", f"bearer-{marker}"]
    created = pipeline.call("POST", "/v1/users", {"email": email, "name": name})
    assert created.status == 202
    url = pipeline.api_url
    probes = [
        call(url, "POST", "/v1/users", {"email": email, "name": name}, {"X-API-Key": wrong_keys[0]}),
        call(url, "POST", "/v1/users", {"email": email}, {"Authorization": f"Bearer {wrong_keys[1]}"}),
        call(url, "POST", "/v1/users", {"email": email, "name": name, "role": "x"},
             {"X-API-Key": pipeline.api_key}),
        send_raw(url, request("GET", "/healthz", {"X-API-Key": f"{wrong_keys[0]}\x00"})),
        # no colon: gunicorn's own error log line would quote this whole line, key and all
        send_raw(url, request("GET", "/healthz", {f"X-API-Key {pipeline.api_key}\r\nX": "1"})),
        send_raw(url, post(pipeline.api_key, f'{{"email": "{email}", "name": "{name}\\u0000"}}'.encode())),
    ]  # fmt: skip
    assert [p.status for p in probes] == [401, 401, 422, 400, 400, 422]
    user_id = created.body["user_id"]
    for destination in ("crm", "marketing", "analytics"):
        wait_until(lambda d=destination: pipeline.get(d, user_id), what=f"{destination} record")
    time.sleep(1)  # the consumers log their batch after applying it

    secrets = [email, name, pipeline.api_key, *wrong_keys]
    logs = [*stack.config.layout.logs_dir.glob("*.log"), *tmp_path.parent.glob("*/api-*.log")]
    assert any(log.name == "api.log" for log in logs)
    leaks = [
        (log.name, secret)
        for log in logs
        for secret in secrets
        if secret in log.read_text(errors="replace")
    ]
    assert leaks == []
    assert created.body["event_id"] in (stack.config.layout.logs_dir / "api.log").read_text()
