"""gunicorn's gthread worker with a deadline on every request, and problem+json errors.

gthread parses each request in a pool thread on a blocking socket. It waits 5 s for a new
connection's first byte, but after that a client that trickles bytes (slow headers, or a slow
body) holds the thread for as long as it keeps trickling: a handful of such clients take every
thread. Here each request must *arrive* within ``request_timeout`` seconds of its connection
being picked up by a thread: every read is given only what is left of that deadline. When it
is spent, the client gets ``408`` (if nothing was answered yet) and the connection is closed.
A request the application is already serving is not cut short: the deadline bounds reading.

gunicorn's own answers to malformed requests (bad request line, header, chunking, limits) are
HTML and its log line quotes the offending header, which may hold an API key; they are
problem+json here and the log says only what was wrong.
"""

from __future__ import annotations

import json
import logging
import socket
import time

from gunicorn.http import errors as http_errors
from gunicorn.http.errors import NoMoreData
from gunicorn.workers.gthread import ThreadWorker

from apps.api.headers import SECURITY_HEADERS

logger = logging.getLogger("datasync.api")

# gunicorn's parse errors that are not a plain 400 -> (status, title)
_STATUS = {
    http_errors.LimitRequestLine: (414, "URI Too Long"),
    http_errors.LimitRequestHeaders: (431, "Request Header Fields Too Large"),
    http_errors.UnsupportedTransferCoding: (501, "Not Implemented"),
    http_errors.ExpectationFailed: (417, "Expectation Failed"),
    http_errors.ForbiddenProxyRequest: (403, "Forbidden"),
}
# Parse errors that are the server's fault, not the client's
_SERVER_FAULTS = (
    http_errors.InvalidResponseHeader,
    http_errors.InvalidResponseHeaderName,
    http_errors.ConfigurationProblem,
)


def problem_response(status: int, title: str, detail: str) -> bytes:
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail})
    return (
        f"HTTP/1.1 {status} {title}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in SECURITY_HEADERS.items())
        + f"\r\n{body}"
    ).encode("latin-1")


class RequestTimeout(NoMoreData, TimeoutError):
    """The request did not arrive in time. As NoMoreData, gunicorn closes the connection
    quietly; while the app reads a body, werkzeug turns it into ClientDisconnected, whose
    context is this TimeoutError (the app answers 408)."""


class DeadlineSocket(socket.socket):
    """A client socket whose reads must be done by a deadline, set anew for each request."""

    deadline: float = float("inf")
    seconds: float = 5.0
    answered = False

    @classmethod
    def adopt(cls, sock: socket.socket) -> DeadlineSocket:
        adopted = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        adopted.setblocking(True)
        return adopted

    def arm(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.answered = False

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise RequestTimeout()
        # A caller's own, shorter timeout still holds (gunicorn drains and lingers with one).
        own = self.gettimeout()
        super().settimeout(remaining if own is None else min(own, remaining))
        try:
            return super().recv(bufsize, flags)
        except TimeoutError:
            if time.monotonic() >= self.deadline:
                raise RequestTimeout() from None
            raise
        finally:
            super().settimeout(own)

    def sendall(self, data: bytes, flags: int = 0) -> None:  # type: ignore[override]
        # The remaining read time says nothing about writing; a client that does not read its
        # answer gets the same time again, not forever.
        self.answered = True
        own = self.gettimeout()
        super().settimeout(self.seconds)
        try:
            super().sendall(data, flags)
        finally:
            super().settimeout(own)


class DeadlineThreadWorker(ThreadWorker):
    """gthread with a per-request arrival deadline (``request_timeout``, set in the config)."""

    request_timeout = 5.0

    def handle(self, conn):  # type: ignore[no-untyped-def]
        if self.cfg.is_ssl:  # TLS ends at the ingress; an SSL socket cannot be adopted
            return super().handle(conn)
        if not isinstance(conn.sock, DeadlineSocket):  # a new connection: nothing read yet
            conn.sock = DeadlineSocket.adopt(conn.sock)
        sock = conn.sock
        sock.arm(self.request_timeout)
        if not conn.initialized and not conn.data_ready:
            # gthread would wait 5 s for the first byte; the deadline is the bound here too.
            if not conn.wait_for_data(self.request_timeout):
                return False
        keep_alive = super().handle(conn)
        if time.monotonic() >= sock.deadline and not sock.answered:
            logger.warning(
                "request did not arrive in time; connection closed",
                extra={"status": 408, "timeout_seconds": self.request_timeout},
            )
            self._answer(
                sock, problem_response(408, "Request Timeout", "The request took too long.")
            )
            return False
        return keep_alive

    def handle_error(self, req, client, addr, exc):  # type: ignore[no-untyped-def]
        if isinstance(exc, http_errors.ParseException) and not isinstance(exc, _SERVER_FAULTS):
            status, title = next(
                (answer for kind, answer in _STATUS.items() if isinstance(exc, kind)),
                (400, "Bad Request"),
            )
            # The exception's text quotes the offending line (maybe a key): log its kind only.
            logger.warning(
                "malformed request", extra={"status": status, "error": type(exc).__name__}
            )
            detail = "The request is not HTTP/1.1 that this server accepts."
        else:
            status, title = 500, "Internal Server Error"
            logger.error("error handling request", exc_info=exc)
            detail = "An unexpected error occurred."
        self._answer(client, problem_response(status, title, detail))

    @staticmethod
    def _answer(sock: socket.socket, response: bytes) -> None:
        try:
            sock.setblocking(False)  # best effort: never wait on a client that does not read
            sock.send(response)
        except OSError:
            pass
