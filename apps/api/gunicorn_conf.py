"""gunicorn settings, from datasync.settings (defaults suit a 2-core machine or a small pod).

Threads, not processes, carry concurrency: a request spends its time waiting on
EventBridge, and the requests of one process share its PutEvents calls (micro-batching), so
one worker with 16 threads is the default. Measured with `make bench` at 200 req/s while the
pipeline applies every event on 2 shared cores: 1 x 16 served all 200 req/s (p50 ~0.1 s on a
machine at load 3-8) where 2 x 8 saturated at ~150 req/s; MiniStack spent ~2.1 instead of
~2.4 ms per event. More workers only pay off once one process's GIL is the limit.
"""

import os

from datasync.settings import Settings

_settings = Settings.load()

bind = f"{_settings.api_host}:{_settings.api_port}"
workers = _settings.gunicorn_workers
threads = _settings.gunicorn_threads
# gthread with a deadline for each request to arrive: a client that trickles bytes cannot
# hold a thread longer than DATASYNC_API_REQUEST_TIMEOUT_SECONDS (apps/api/gunicorn_worker.py).
worker_class = "apps.api.gunicorn_worker.DeadlineThreadWorker"
timeout = 30
graceful_timeout = 20
keepalive = 5
# The heartbeat file must live on a writable tmpfs: the container root is read-only.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
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
    """Hand the request deadline to the worker (gunicorn has no setting for it), and warm it.

    The readiness probe (one bounded DescribeEventBus) makes this worker's SDK client resolve
    its endpoint and credentials and open a pooled connection to the bus before its first
    request, instead of during it; a bus that does not answer only leaves it cold.
    """
    worker.request_timeout = _settings.api_request_timeout_seconds
    state = getattr(worker.wsgi, "extensions", {}).get("datasync")  # none if the app failed
    if state is not None:
        state.readiness.check()
