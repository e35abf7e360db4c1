"""``datasync-consumer --destination crm``: run one destination's workers until SIGTERM.

The handlers for SIGTERM/SIGINT come first, before the heavy imports (boto3, pydantic,
psycopg: about 0.5 s, seconds on a busy node): KEDA may scale a pod in while it is still
starting, and that is a clean stop too (exit 0), not a kill. The rest is in ``app.py``.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

logger = logging.getLogger("datasync.consumer")


def stop_on_signals() -> threading.Event:
    """An event that SIGTERM/SIGINT set: the workers finish the batch in hand and return."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        logger.info(
            "stopping after the batch in hand", extra={"signal": signal.Signals(signum).name}
        )
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop


def main(argv: list[str] | None = None) -> int:
    stop = stop_on_signals()
    from apps.consumers.app import run

    return run(argv, stop)


if __name__ == "__main__":
    sys.exit(main())
