"""``datasync-consumer --destination crm``: run one destination's workers until SIGTERM.

All objects are built here, once: settings, the SQS client, one store per worker thread
(SQLite/psycopg connections are not shared between threads), the health endpoint.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from apps.consumers.health import start_health_server
from apps.consumers.worker import ConsumerWorker, Metrics, RedriveTarget
from datasync.contract import DESTINATIONS
from datasync.core.aws import client
from datasync.core.logging import configure_logging
from datasync.core.stores import open_store
from datasync.settings import ConfigError, Settings

logger = logging.getLogger("datasync.consumer")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="datasync-consumer", description=__doc__.splitlines()[0])
    parser.add_argument("--destination", required=True, choices=DESTINATIONS)
    parser.add_argument(
        "--queue-url",
        help="queue to read (default: DATASYNC_QUEUE_URL, else DATASYNC_<DEST>_QUEUE_URL)",
    )
    parser.add_argument("--concurrency", type=int, default=1, help="worker threads (default 1)")
    parser.add_argument("--health-host", default="0.0.0.0", help="bind address of /healthz")  # noqa: S104
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings.load()
    configure_logging(f"datasync-consumer-{args.destination}", settings.log_level)
    try:
        queue_url = args.queue_url or settings.queue_url or settings.queue_url_for(args.destination)
    except ConfigError as exc:
        print(f"datasync-consumer: {exc}", file=sys.stderr)
        return 2
    sqs = client("sqs", region=settings.aws_region, endpoint_url=settings.aws_endpoint_url)
    redrive = RedriveTarget.of_queue(sqs, queue_url)
    metrics = Metrics()
    workers = [
        ConsumerWorker(
            sqs=sqs,
            queue_url=queue_url,
            store=open_store(
                args.destination, database_url=settings.database_dsn(), store_dir=settings.store_dir
            ),
            redrive=redrive,
            metrics=metrics,
        )
        for _ in range(max(1, args.concurrency))
    ]
    if settings.health_port:
        start_health_server(args.health_host, settings.health_port, args.destination, metrics)

    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        logger.info(
            "stopping after the batch in hand", extra={"signal": signal.Signals(signum).name}
        )
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    logger.info(
        "consumer started", extra={"destination": args.destination, "threads": len(workers)}
    )
    threads = [
        threading.Thread(target=w.run, args=(stop,), name=f"worker-{i}")
        for i, w in enumerate(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for worker in workers:
        worker.store.close()
    logger.info("consumer stopped", extra={"counts": metrics.snapshot()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
