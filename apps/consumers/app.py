"""The consumer process, built once: settings, the SQS client, the store its worker threads
share (a PostgreSQL pool with a connection per thread; SQLite lends its one connection to a
thread at a time), the health endpoint.

Outside local mode (DATASYNC_ENV is not ``local``) a consumer refuses to start without
DATABASE_URL: in a container a SQLite file lives on the pod's disk, so every replica would
hold a fragment of the store and scaling to zero would wipe it. There, too, the connection must
be encrypted and the server verified (``sslmode=verify-full``). A database that cannot be
reached at start is no reason to exit: the workers wait for it (not ready meanwhile).

With DATASYNC_STORE_SCHEMA=check (the chart) the consumer does not migrate: a schema that is
behind at start exits 5 saying to run `datasync-migrate`; found behind later (the database was
down at start) it holds its batches, not ready with the same reason. Exit codes are those of
``datasync.core.exit_codes`` (5: misconfigured, 4: the queue cannot be reached).
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from apps.consumers.health import start_health_server
from apps.consumers.metrics import ConsumerMetrics
from apps.consumers.worker import ConsumerWorker, RedriveTarget
from datasync.contract import DESTINATIONS
from datasync.core import exit_codes
from datasync.core.aws import client
from datasync.core.logging import configure_logging
from datasync.core.queues import error_code
from datasync.core.stores import SchemaNotReady, SqlStore, StoreUnavailable, open_store
from datasync.core.stores.connections import postgres_sslmode
from datasync.settings import ConfigError, Settings, config_error

logger = logging.getLogger("datasync.consumer")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="datasync-consumer", description="Run one destination's workers until SIGTERM."
    )
    parser.add_argument("--destination", required=True, choices=DESTINATIONS)
    parser.add_argument(
        "--queue-url",
        help="queue to read (default: DATASYNC_QUEUE_URL, else DATASYNC_<DEST>_QUEUE_URL)",
    )
    parser.add_argument("--concurrency", type=int, default=1, help="worker threads (default 1)")
    parser.add_argument(
        "--health-host",
        default="0.0.0.0",  # noqa: S104 - in a pod the kubelet and Prometheus reach it
        help="bind address of /healthz and /metrics",
    )
    return parser.parse_args(argv)


VERIFIED_TLS = "verify-full"
UNVERIFIED_TLS = ("require", "verify-ca")  # encrypted; the server's name (or CA) not checked


def database_url(settings: Settings, *, for_migrations: bool = False) -> str | None:
    """The consumer's DATABASE_URL (``for_migrations``: DATABASE_MIGRATION_URL when set); None
    (SQLite in DATASYNC_STORE_DIR) only in local mode."""
    url = settings.database_dsn()
    if for_migrations and settings.database_migration_url:
        url = settings.database_migration_url.get_secret_value()
    if url is None and settings.env != "local":
        raise ConfigError(
            "DATABASE_URL is not set: outside local mode a consumer needs a PostgreSQL database "
            "(set DATABASE_URL=postgresql://...?sslmode=verify-full; DATASYNC_ENV=local allows "
            "SQLite files)"
        )
    if url is not None:
        try:
            sslmode = postgres_sslmode(url)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if settings.env != "local":
            _require_verified_tls(sslmode or settings.pgsslmode, settings)
    return url


def _require_verified_tls(sslmode: str | None, settings: Settings) -> None:
    """Outside local mode: sslmode=verify-full, or require/verify-ca when explicitly allowed."""
    if sslmode == VERIFIED_TLS:
        return
    if sslmode in UNVERIFIED_TLS and settings.database_allow_unverified_tls:
        logger.warning(
            "the database's certificate is not fully verified", extra={"sslmode": sslmode}
        )
        return
    given = f"sslmode={sslmode}" if sslmode else "no sslmode (libpq then tries plain text)"
    allow = ""
    if sslmode in UNVERIFIED_TLS:
        allow = (
            f"; to accept sslmode={sslmode}, which encrypts without checking whom it talks to, "
            "set DATASYNC_DATABASE_ALLOW_UNVERIFIED_TLS=true"
        )
    raise ConfigError(
        f"DATABASE_URL has {given}: outside local mode the connection to the database must be "
        "encrypted and the server verified. Add sslmode=verify-full to DATABASE_URL, with "
        "sslrootcert=<the file of the CA that signed the server's certificate> (Amazon RDS: "
        f"its region's CA bundle){allow}"
    )


def run(argv: list[str] | None, stop: threading.Event) -> int:
    """Parse, configure, start the workers; return the exit code once ``stop`` is set."""
    args = parse_args(argv)
    try:
        settings = Settings.load()
    except ValidationError as exc:
        print(f"datasync-consumer: {config_error(exc)}", file=sys.stderr)
        return exit_codes.CONFIG
    configure_logging(f"datasync-consumer-{args.destination}", settings.log_level)
    try:
        queue_url = args.queue_url or settings.queue_url or settings.queue_url_for(args.destination)
        dsn = database_url(settings)
    except ConfigError as exc:
        print(f"datasync-consumer: {exc}", file=sys.stderr)
        return exit_codes.CONFIG
    if stop.is_set():  # stopped while starting: nothing received yet, nothing to finish
        return exit_codes.OK
    metrics = ConsumerMetrics(args.destination)
    threads = max(1, args.concurrency)
    store = open_store(
        args.destination, database_url=dsn, store_dir=settings.store_dir,
        prepare=False, pool_size=threads, schema=settings.store_schema,
    )  # fmt: skip
    try:
        prepare_store(store, metrics)
        sqs = client("sqs", region=settings.aws_region, endpoint_url=settings.aws_endpoint_url)
        redrive = RedriveTarget.of_queue(sqs, queue_url)
    except SchemaNotReady as exc:
        store.close()
        print(f"datasync-consumer: {exc.reason}", file=sys.stderr)
        return exit_codes.CONFIG
    except (BotoCoreError, ClientError) as exc:
        store.close()
        print(
            f"datasync-consumer: cannot read the queue {queue_url} ({error_code(exc)}): "
            "check DATASYNC_QUEUE_URL, AWS_REGION and the credentials",
            file=sys.stderr,
        )
        return exit_codes.UNAVAILABLE
    workers = [
        ConsumerWorker(
            sqs=sqs,
            queue_url=queue_url,
            store=store,
            redrive=redrive,
            metrics=metrics,
            wait_seconds=settings.receive_wait_seconds,
            batch_window_seconds=settings.receive_batch_window_seconds,
        )
        for _ in range(threads)
    ]
    if settings.health_port:
        start_health_server(args.health_host, settings.health_port, metrics)
    logger.info(
        "consumer started", extra={"destination": args.destination, "threads": len(workers)}
    )
    try:
        run_until_stopped(workers, stop)
    finally:
        store.close()
    logger.info("consumer stopped", extra={"counts": metrics.snapshot()})
    return exit_codes.OK


def prepare_store(store: SqlStore, metrics: ConsumerMetrics) -> None:
    """Migrate the store's schema, or check it, now if the database answers; otherwise the
    workers wait. Raises SchemaNotReady when the schema is behind and may not be migrated here."""
    try:
        store.prepare()
    except SchemaNotReady:
        raise
    except StoreUnavailable as exc:
        metrics.store_unreachable(exc.reason)
        logger.warning(
            "store unreachable at start; receiving nothing until it answers",
            extra={"reason": exc.reason},
        )
    else:
        metrics.store_reachable()


def run_until_stopped(workers: list[ConsumerWorker], stop: threading.Event) -> None:
    threads = [
        threading.Thread(target=w.run, args=(stop,), name=f"worker-{i}")
        for i, w in enumerate(workers)
    ]
    for thread in threads:
        thread.start()
    # Join with a timeout, in a loop: a signal the kernel hands to a worker thread (e.g. a
    # SIGTERM pending while the process was SIGSTOPped) only runs its Python handler when the
    # main thread wakes up, and a plain join() never does.
    while any(thread.is_alive() for thread in threads):
        for thread in threads:
            thread.join(timeout=0.5)
