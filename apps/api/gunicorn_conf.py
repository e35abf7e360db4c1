"""gunicorn settings, from the environment (defaults suit a 2-core machine or a small pod).

Threads, not processes, carry concurrency: a request spends its time waiting on
EventBridge, so a few workers with many threads keep p99 low with little memory.
"""

import os

bind = f"{os.environ.get('API_HOST', '127.0.0.1')}:{os.environ.get('API_PORT', '8080')}"
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
worker_class = "gthread"
timeout = 30
graceful_timeout = 20
keepalive = 5
# The heartbeat file must live on a writable tmpfs: the container root is read-only.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
accesslog = None  # the app logs one structured line per request instead
errorlog = "-"
loglevel = os.environ.get("DATASYNC_LOG_LEVEL", "info").lower()
# gunicorn 27's runtime control socket lives under $HOME; we do not use it, and the
# container's root filesystem is read-only.
control_socket_disable = True
