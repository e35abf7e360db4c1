"""A tiny HTTP endpoint for Kubernetes probes and Prometheus: /healthz and /metrics."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from apps.consumers.metrics import ConsumerMetrics
from apps.consumers.worker import LONG_POLL_SECONDS

# A poll returns at least every long-poll interval; three missed intervals means stuck.
STALE_AFTER_SECONDS = 3 * LONG_POLL_SECONDS + 30


def start_health_server(host: str, port: int, metrics: ConsumerMetrics) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/healthz":
                stale = metrics.seconds_since_poll() > STALE_AFTER_SECONDS
                self._reply(503 if stale else 200, b"stale\n" if stale else b"ok\n")
            elif self.path == "/metrics":
                self._reply(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            else:
                self._reply(404, b"not found\n")

        def _reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # probes every few seconds: stay quiet
            return

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
