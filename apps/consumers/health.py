"""A tiny HTTP endpoint for Kubernetes probes and Prometheus: /healthz and /metrics."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from apps.consumers.worker import LONG_POLL_SECONDS, Metrics

# A poll returns at least every long-poll interval; three missed intervals means stuck.
STALE_AFTER_SECONDS = 3 * LONG_POLL_SECONDS + 30


def prometheus_text(destination: str, metrics: Metrics) -> str:
    lines = [
        "# HELP datasync_consumer_records_total Records handled, by outcome.",
        "# TYPE datasync_consumer_records_total counter",
    ]
    for outcome, count in sorted(metrics.snapshot().items()):
        labels = f'destination="{destination}",outcome="{outcome}"'
        lines.append(f"datasync_consumer_records_total{{{labels}}} {count}")
    lines += [
        "# HELP datasync_consumer_seconds_since_poll Seconds since the last receive returned.",
        "# TYPE datasync_consumer_seconds_since_poll gauge",
        f'datasync_consumer_seconds_since_poll{{destination="{destination}"}} '
        f"{time.monotonic() - metrics.last_poll:.3f}",
    ]
    return "\n".join(lines) + "\n"


def start_health_server(
    host: str, port: int, destination: str, metrics: Metrics
) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/healthz":
                stale = time.monotonic() - metrics.last_poll > STALE_AFTER_SECONDS
                self._reply(503 if stale else 200, "stale\n" if stale else "ok\n")
            elif self.path == "/metrics":
                self._reply(200, prometheus_text(destination, metrics), "text/plain; version=0.0.4")
            else:
                self._reply(404, "not found\n")

        def _reply(self, status: int, body: str, content_type: str = "text/plain") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:  # probes every few seconds: stay quiet
            return

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
