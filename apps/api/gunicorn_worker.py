"""gunicorn's gthread worker: no thread for a silent connection, a deadline on every request,
and problem+json errors.

gthread hands every new connection to a pool thread at once, and that thread waits up to 5 s
for the first byte: a pod has a handful of threads, so a few hundred connections that send
nothing stall every other request. Here a new connection waits in the worker's poller instead
(where kept-alive connections already wait): it costs a file descriptor, no thread, and is
handed to the pool only once it is readable. One that sends nothing for
``first_byte_timeout`` seconds is closed by the poller.

Once a thread has a connection, a client that trickles bytes (slow headers, or a slow body)
would hold it for as long as it keeps trickling. Each request must therefore *arrive* within
``request_timeout`` seconds of being picked up by a thread: every read is given only what is
left of that deadline. When it is spent, the client gets ``408`` (if nothing was answered yet)
and the connection is closed. A request the application is already serving is not cut short:
the deadline bounds reading.

gunicorn's own answers to malformed requests (bad request line, header, chunking, limits) are
HTML and its log line quotes the offending header, which may hold an API key; they are
problem+json here and the log says only what was wrong.
"""

from __future__ import annotations

import errno
import json
import logging
import selectors
import socket
import time
from functools import partial

from gunicorn.http import errors as http_errors
from gunicorn.http.errors import NoMoreData
from gunicorn.workers.gthread import TConn, ThreadWorker

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
    """gthread whose new connections wait for their first byte in the poller (at most
    ``first_byte_timeout``), and whose requests must arrive within ``request_timeout`` (both set
    in the config)."""

    request_timeout = 5.0
    first_byte_timeout = 1.0

    def accept(self, listener):  # type: ignore[no-untyped-def]
        """A new connection goes to the poller, as gthread's deferred ones do: the pool only
        ever gets connections with bytes to read (on_pending_socket_readable)."""
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, client_sock, client_addr, listener.getsockname())  # non-blocking
        conn.timeout = time.monotonic() + self.first_byte_timeout
        # Every pending connection gets the same timeout, so the deque stays in timeout order
        # (murder_pending and the wake-up below rely on it).
        self.pending_conns.append(conn)
        self.poller.register(
            conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn)
        )

    def wait_for_and_dispatch_events(self, timeout):  # type: ignore[no-untyped-def]
        # gthread's loop wakes once a second; a silent connection is closed on time instead.
        if self.pending_conns:
            timeout = min(timeout, max(0.0, self.pending_conns[0].timeout - time.monotonic()))
        super().wait_for_and_dispatch_events(timeout)

    def handle(self, conn):  # type: ignore[no-untyped-def]
        if self.cfg.is_ssl:  # TLS ends at the ingress; an SSL socket cannot be adopted
            return super().handle(conn)
        if not isinstance(conn.sock, DeadlineSocket):  # a new connection: nothing read yet
            conn.sock = DeadlineSocket.adopt(conn.sock)
        sock = conn.sock
        sock.arm(self.request_timeout)
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
