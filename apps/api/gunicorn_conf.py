"""gunicorn settings, from datasync.settings (defaults suit a 2-core machine or a small pod).

Threads, not processes, carry concurrency: a request spends its time waiting on
EventBridge, and the requests of one process share its PutEvents calls (micro-batching), so
one worker with 16 threads is the default. Measured with `make bench` at 200 req/s while the
pipeline applies every event on 2 shared cores: 1 x 16 served all 200 req/s (p50 ~0.1 s on a
machine at load 3-8) where 2 x 8 saturated at ~150 req/s; MiniStack spent ~2.1 instead of
~2.4 ms per event. More workers only pay off once one process's GIL is the limit.

Prometheus metrics (apps/api/metrics.py) in multiprocess mode: the master makes a private
directory for the workers' sample files before any worker starts, serves every worker's samples
summed on DATASYNC_API_METRICS_HOST:DATASYNC_API_METRICS_PORT (never the public port), forgets
a dead worker's gauges, and removes the directory when it exits.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

from pydantic import ValidationError

from apps.api.auth import ApiKeys
from datasync.core import exit_codes
from datasync.settings import ConfigError, Settings


def _checked_settings() -> Settings:
    """The settings, and the API keys checked, before any worker starts.

    A worker that cannot build the app only makes gunicorn exit 3 ("Worker failed to boot")
    after a traceback; a missing, short or malformed key (or another invalid setting) ends the
    server here instead, with exit code 5 (datasync/core/exit_codes.py) and what to set.
    """
    try:
        settings = Settings.load()
        ApiKeys(settings.api_key_list())
    except (ConfigError, ValidationError) as exc:
        print(f"datasync-api: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(exit_codes.CONFIG) from None
    return settings


_settings = _checked_settings()

bind = f"{_settings.api_host}:{_settings.api_port}"
workers = _settings.gunicorn_workers
threads = _settings.gunicorn_threads
# gthread whose new connections wait for their first byte in the poller, not in a thread (closed
# after DATASYNC_API_FIRST_BYTE_TIMEOUT_SECONDS of silence), with a deadline for each request to
# arrive: a client that trickles bytes cannot hold a thread longer than
# DATASYNC_API_REQUEST_TIMEOUT_SECONDS (apps/api/gunicorn_worker.py).
worker_class = "apps.api.gunicorn_worker.DeadlineThreadWorker"
# gunicorn would take X-Forwarded-Proto from any peer in forwarded_allow_ips (127.0.0.1 by
# default): whether a request came over TLS is the app's to decide, from trusted proxies only.
secure_scheme_headers: dict[str, str] = {}
timeout = 30
graceful_timeout = 20
keepalive = 5
# The heartbeat file must live on a writable tmpfs: the container root is read-only.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client reads it when first imported
accesslog = None  # the app logs one structured line per request instead
errorlog = "-"
loglevel = _settings.log_level.lower()
# gunicorn's own lines as JSON, like the app's (one formatter: datasync.core.logging).
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "datasync.core.logging.JsonFormatter", "service": "datasync-api"}
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        }
    },
    "root": {"level": _settings.log_level.upper(), "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {
            "level": _settings.log_level.upper(),
            "handlers": ["stderr"],
            "propagate": False,
        },
        "gunicorn.access": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},
    },
}
# gunicorn 27's runtime control socket lives under $HOME; we do not use it, and the
# container's root filesystem is read-only.
control_socket_disable = True


def post_worker_init(worker):  # type: ignore[no-untyped-def]
    """Hand the worker its deadlines (gunicorn has no settings for them), and warm it.

    The readiness probe (one bounded DescribeEventBus) makes this worker's SDK client resolve
    its endpoint and credentials and open a pooled connection to the bus before its first
    request, instead of during it; a bus that does not answer only leaves it cold.
    """
    worker.first_byte_timeout = _settings.api_first_byte_timeout_seconds
    worker.request_timeout = _settings.api_request_timeout_seconds
    state = getattr(worker.wsgi, "extensions", {}).get("datasync")  # none if the app failed
    if state is not None:
        state.readiness.check()


def on_starting(server):  # type: ignore[no-untyped-def]
    """Before any worker imports prometheus-client: where the workers write their samples.

    A directory of our own (on the tmpfs, like the heartbeats), or the one
    PROMETHEUS_MULTIPROC_DIR names, emptied: samples of an earlier run's processes would be
    added to this run's.
    """
    directory = _settings.prometheus_multiproc_dir
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
    else:
        directory = Path(tempfile.mkdtemp(prefix="datasync-api-metrics-", dir=worker_tmp_dir))
        # A write to the environment, on purpose: prometheus-client takes the directory from
        # this variable only, in every worker, and the workers inherit the master's environment.
        os.environ[MULTIPROC_DIR] = str(directory)
        server.datasync_metrics_dir = directory  # ours: removed on exit


def when_ready(server):  # type: ignore[no-untyped-def]
    """Serve /metrics from the master: it outlives the workers and sees all their samples."""
    if not _settings.api_metrics_port:
        return
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    host, port = _settings.api_metrics_host, _settings.api_metrics_port
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise RuntimeError(
            f"cannot serve metrics on {host}:{port} ({exc.strerror}): set "
            "DATASYNC_API_METRICS_PORT to a free port, or 0 for no metrics"
        ) from None
    server.log.info("metrics served", extra={"host": host, "port": port, "path": "/metrics"})


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    """A worker is gone: its live gauges (circuit open) go with it; its counts stay."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):  # type: ignore[no-untyped-def]
    directory = getattr(server, "datasync_metrics_dir", None)
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
