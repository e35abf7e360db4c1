"""Talking to a real API server the way hostile or unlucky clients do.

Raw sockets (for what an HTTP library refuses to send: bare CR, NUL, trickled bytes), timed
requests, and extra API servers (real gunicorn, the project's config) with settings of their own.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.paths import ROOT, venv_bin
from tests.pipeline import free_port, wait_until


@dataclass
class Answer:
    status: int  # 0: the server closed the connection without an answer
    headers: dict[str, str]
    body: bytes
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body)


def parse(raw: bytes, seconds: float) -> Answer:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 "):
        return Answer(0, {}, raw, seconds)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(body)))
    return Answer(int(lines[0].split()[1]), headers, body[:length], seconds)


def send_raw(url: str, request: bytes, timeout: float = 10.0) -> Answer:
    """Send bytes as they are; read one answer (or until the server closes)."""
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # the server may answer and close mid-send
            sock.sendall(request)
        return parse(_read_answer(sock), time.monotonic() - started)


def _read_answer(sock: socket.socket) -> bytes:
    raw = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            raw += chunk
            head, sep, body = raw.partition(b"\r\n\r\n")
            if sep and b"content-length:" in head.lower():
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                if len(body) >= length:
                    break
    return raw


def trickle(
    url: str, request: bytes, every: float, for_seconds: float, at_once: bytes = b""
) -> Answer:
    """Send ``at_once``, then ``request`` one byte every ``every`` seconds; the answer, and when
    it came (status 0: the connection was closed without one)."""
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=for_seconds + 10) as sock:
        try:
            sock.sendall(at_once)
            for byte in request:
                sock.sendall(bytes([byte]))
                if time.monotonic() - started > for_seconds:
                    break
                time.sleep(every)
        except OSError:  # the server closed it: what did it say first?
            pass
        return parse(_read_answer(sock), time.monotonic() - started)


@contextlib.contextmanager
def silent_connections(url: str, count: int) -> Iterator[float]:
    """``count`` connections that send nothing; yields when the last one was opened."""
    host, port = url.removeprefix("http://").split(":")
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            opened.append(socket.create_connection((host, int(port)), timeout=10))
        yield time.monotonic()
    finally:
        for sock in opened:
            sock.close()


def call(
    url: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> Answer:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method)  # noqa: S310
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310
            status, answer_headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, answer_headers, raw = error.code, error.headers, error.read()
    headers_lower = {k.lower(): v for k, v in answer_headers.items()}
    return Answer(status, headers_lower, raw, time.monotonic() - started)


@contextlib.contextmanager
def api_server(env: dict[str, str], log: Path, **settings: str) -> Iterator[str]:
    """Another real API (gunicorn, the project's config) with ``settings`` on top of ``env``."""
    port = free_port()
    server_env = {**os.environ, **env, **settings, "API_HOST": "127.0.0.1", "API_PORT": str(port)}
    with log.open("ab") as out:
        process = subprocess.Popen(  # noqa: S603 - our own executable
            [venv_bin("gunicorn"), "--config", "python:apps.api.gunicorn_conf", "apps.api.wsgi:app"],
            env=server_env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _alive(url), timeout=30, what=f"the API on {url} (see {log})")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _alive(url: str) -> bool:
    try:
        return call(url, "GET", "/healthz").status == 200
    except OSError:
        return False


def closed_port_url() -> str:
    """An address where nothing listens: connections are refused at once."""
    return f"http://127.0.0.1:{free_port()}"
