"""The consumer's HTTP endpoint for Kubernetes probes and Prometheus.

- ``/healthz`` (liveness): 200 while the worker loop turns: a receive returned, or a wait for an
  unreachable store went round, within ``STALE_AFTER_SECONDS``; 503 ``stale`` otherwise (stuck:
  restart it). A database that is down is no reason to restart a consumer.
- ``/readyz`` (readiness): 200 ``ready`` while the store takes writes; 503 with the reason
  while it cannot (``store unreachable: ...``), and before it first answered.
- ``/metrics``: prometheus-client's exposition (text or OpenMetrics, gzip when asked).

Served by waitress: its I/O loop reads each request whole before a thread of a small, fixed
pool answers it, so a client that connects and sends nothing holds no thread, and is cut off
after ``IDLE_TIMEOUT_SECONDS``; connections beyond ``CONNECTION_LIMIT`` wait to be accepted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import make_wsgi_app

from apps.consumers.metrics import ConsumerMetrics
from apps.consumers.worker import LONG_POLL_SECONDS

# A poll returns at least every long-poll interval; three missed intervals means stuck.
STALE_AFTER_SECONDS = 3 * LONG_POLL_SECONDS + 30
HANDLER_THREADS = 2  # probes and a scrape every few seconds: answers take microseconds
IDLE_TIMEOUT_SECONDS = 10  # a connection that sends nothing for this long is closed
CONNECTION_LIMIT = 64

StartResponse = Callable[..., Any]


def health_app(metrics: ConsumerMetrics) -> Callable[[dict[str, Any], StartResponse], Iterable]:
    metrics_app = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path == "/healthz":
            stale = metrics.seconds_since_progress() > STALE_AFTER_SECONDS
            status, body = ("503 Service Unavailable", "stale") if stale else ("200 OK", "ok")
        elif path == "/readyz":
            problem = metrics.store_problem
            if metrics.seconds_since_progress() > STALE_AFTER_SECONDS:
                problem = "stale: the worker loop has not turned"
            status, body = ("503 Service Unavailable", problem) if problem else ("200 OK", "ready")
        else:
            status, body = "404 Not Found", "not found"
        data = f"{body}\n".encode()
        length = ("Content-Length", str(len(data)))
        start_response(status, [("Content-Type", "text/plain; charset=utf-8"), length])
        return [data]

    return app


class HealthServer:
    """The endpoint, served from a daemon thread until ``close()``."""

    def __init__(
        self,
        host: str,
        port: int,
        metrics: ConsumerMetrics,
        *,
        idle_timeout: int = IDLE_TIMEOUT_SECONDS,
    ):
        from waitress.server import create_server

        self._server = create_server(
            health_app(metrics),
            host=host,
            port=port,
            threads=HANDLER_THREADS,
            connection_limit=CONNECTION_LIMIT,
            channel_timeout=idle_timeout,
            # How often idle connections are looked for: a fraction of the timeout.
            cleanup_interval=max(1, idle_timeout // 4),
            ident="datasync-consumer",
            clear_untrusted_proxy_headers=True,
        )
        # waitress logs a line per queued request when its threads are busy: no use here.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        self._thread = threading.Thread(target=self._serve, name="health", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    def _serve(self) -> None:
        try:
            self._server.run()
        except OSError:  # closed while the loop was selecting
            return

    def close(self) -> None:
        self._server.close()
        self._server.task_dispatcher.shutdown(timeout=2)


def start_health_server(host: str, port: int, metrics: ConsumerMetrics) -> HealthServer:
    return HealthServer(host, port, metrics)
