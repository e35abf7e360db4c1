"""Settings (ground floor), read from the environment and, locally, from a dotenv file.

`make run` writes ``var/local/datasync.env`` from the Terraform outputs; the API, the
consumers and the CLI all read it through this one class, so there is one place that says
which variable means what. Real environment variables win over the file. On Kubernetes
the same variables come from a ConfigMap and Secrets.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, create_model, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from datasync.contract import DESTINATIONS
from datasync.local_layout import LOCAL_API_KEY, QUEUE_KINDS, Layout, queue_setting_name

# Outside local mode an API key must be at least this long: a key that can be guessed is no lock.
MIN_API_KEY_LENGTH = 32
MAKE_A_KEY = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
# Only for local emulators: hashes are not secret if the key is public, and that is fine there.
LOCAL_ANALYTICS_HASH_KEY = "local-dev-analytics-hash-key"
DEFAULT_ENV_FILE = Layout(Path("var")).env_file  # var/local/datasync.env, from the checkout


class ConfigError(RuntimeError):
    """A setting is missing or wrong; the message says what to set."""


def env_file() -> Path:
    return Path(os.environ.get("DATASYNC_ENV_FILE", DEFAULT_ENV_FILE))


# Every destination has three queues, named in the local layout's env file the same way
# (QUEUE_KINDS, queue_setting_name): adding a destination to the contract gives it settings.

_DestinationQueueUrls = create_model(  # type: ignore[call-overload]
    "_DestinationQueueUrls",
    __base__=BaseSettings,
    **{
        f"{destination}_{kind}_url": (
            str | None,
            Field(None, validation_alias=queue_setting_name(destination, kind)),
        )
        for destination in DESTINATIONS
        for kind in QUEUE_KINDS
    },
)


class Settings(_DestinationQueueUrls):
    model_config = SettingsConfigDict(extra="ignore", env_file_encoding="utf-8")

    env: Literal["local", "aws"] = Field("aws", validation_alias="DATASYNC_ENV")
    api_keys: SecretStr = Field(SecretStr(""), validation_alias="DATASYNC_API_KEYS")
    log_level: str = Field("INFO", validation_alias="DATASYNC_LOG_LEVEL")

    aws_region: str = Field(
        "us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION")
    )
    aws_endpoint_url: str | None = Field(None, validation_alias="AWS_ENDPOINT_URL")
    event_bus_name: str = Field("datasync-bus", validation_alias="DATASYNC_EVENT_BUS_NAME")
    event_bus_arn: str | None = Field(None, validation_alias="DATASYNC_EVENT_BUS_ARN")
    archive_arn: str | None = Field(None, validation_alias="DATASYNC_ARCHIVE_ARN")
    # Every live event passes the intake queue once, before any destination's queue.
    intake_queue_url: str | None = Field(None, validation_alias="DATASYNC_INTAKE_QUEUE_URL")
    intake_dlq_url: str | None = Field(None, validation_alias="DATASYNC_INTAKE_DLQ_URL")

    # API publishing: the budget bounds a whole publish (attempts and backoff); one attempt's
    # worst case, connect + read timeout, must fit in it. The breaker opens after that many
    # publishes in a row failed, for the cool-down, then lets one probe through.
    publish_budget_seconds: float = Field(
        2.0, gt=0, le=30, validation_alias="DATASYNC_PUBLISH_BUDGET_SECONDS"
    )
    publish_connect_timeout_seconds: float = Field(
        0.3, gt=0, validation_alias="DATASYNC_PUBLISH_CONNECT_TIMEOUT_SECONDS"
    )
    publish_read_timeout_seconds: float = Field(
        0.6, gt=0, validation_alias="DATASYNC_PUBLISH_READ_TIMEOUT_SECONDS"
    )
    # Micro-batching: concurrent publishes of a worker process share PutEvents calls, at most
    # this many calls at once; a sender may linger this long for its batch to fill.
    publish_max_in_flight: int = Field(
        2, ge=1, le=32, validation_alias="DATASYNC_PUBLISH_MAX_IN_FLIGHT"
    )
    publish_linger_seconds: float = Field(
        0.0, ge=0, le=0.05, validation_alias="DATASYNC_PUBLISH_LINGER_SECONDS"
    )
    breaker_failures: int = Field(5, ge=1, validation_alias="DATASYNC_BREAKER_FAILURES")
    breaker_cooldown_seconds: float = Field(
        5.0, gt=0, validation_alias="DATASYNC_BREAKER_COOLDOWN_SECONDS"
    )
    # API per-key rate limit, a token bucket per worker process (0 turns it off).
    api_rate_limit: float = Field(500, ge=0, validation_alias="DATASYNC_API_RATE_LIMIT")
    api_rate_limit_burst: int = Field(1000, ge=1, validation_alias="DATASYNC_API_RATE_LIMIT_BURST")
    # Refused API keys a client address may send per minute (and at once) before it gets 429,
    # per worker process (0 turns it off); how many proxies in front of the API append to
    # X-Forwarded-For (0: the peer is the client; the chart sets 1 behind its Ingress).
    api_auth_failures_per_minute: int = Field(
        30, ge=0, validation_alias="DATASYNC_API_AUTH_FAILURES_PER_MINUTE"
    )
    api_trusted_proxies: int = Field(0, ge=0, le=5, validation_alias="DATASYNC_API_TRUSTED_PROXIES")
    # API server (gunicorn): bind, size, how long a new connection may stay silent (it waits in
    # the poller, holding no thread), and how long one request may take to arrive.
    api_host: str = Field("127.0.0.1", validation_alias="API_HOST")
    api_port: int = Field(8080, ge=0, le=65535, validation_alias="API_PORT")
    # Where `datasync send` finds the API (unset or empty: the local one, on api_port).
    api_url: str | None = Field(None, validation_alias="DATASYNC_API_URL")
    # One worker by default: all requests then share its PutEvents calls (bigger batches, less
    # CPU in the API and the bus); one process's ~2 ms per request fits in one core at 200/s.
    gunicorn_workers: int = Field(1, ge=1, validation_alias="GUNICORN_WORKERS")
    gunicorn_threads: int = Field(16, ge=1, validation_alias="GUNICORN_THREADS")
    api_first_byte_timeout_seconds: float = Field(
        1.0, gt=0, le=60, validation_alias="DATASYNC_API_FIRST_BYTE_TIMEOUT_SECONDS"
    )
    api_request_timeout_seconds: float = Field(
        5.0, gt=0, le=300, validation_alias="DATASYNC_API_REQUEST_TIMEOUT_SECONDS"
    )
    # Prometheus /metrics of the API: a port of its own, never the public one (0: none). Bound
    # to loopback unless told otherwise (a pod sets 0.0.0.0 so that Prometheus can scrape it).
    api_metrics_port: int = Field(
        9102, ge=0, le=65535, validation_alias="DATASYNC_API_METRICS_PORT"
    )
    api_metrics_host: str = Field("127.0.0.1", validation_alias="DATASYNC_API_METRICS_HOST")
    # Where the metrics of a running stack are scraped (`make run` writes them): the status
    # page and the CLI read them. "crm=http://127.0.0.1:9100/metrics,marketing=...".
    api_metrics_url: str | None = Field(None, validation_alias="DATASYNC_API_METRICS_URL")
    consumer_metrics_urls: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, validation_alias="DATASYNC_CONSUMER_METRICS_URLS"
    )

    # The status page /dashboard (read-only, behind the API keys); a browser's login lasts this
    # long, as an item of the sessions table (Terraform output dashboard_sessions_table) that
    # every worker and pod reads: a logout ends it everywhere.
    dashboard_enabled: bool = Field(True, validation_alias="DATASYNC_DASHBOARD_ENABLED")
    dashboard_session_hours: float = Field(
        8, gt=0, le=24 * 7, validation_alias="DATASYNC_DASHBOARD_SESSION_HOURS"
    )
    dashboard_sessions_table: str | None = Field(
        None, validation_alias="DATASYNC_DASHBOARD_SESSIONS_TABLE"
    )

    # Consumers: the queue to read (KEDA reads the same variable), and where to store.
    queue_url: str | None = Field(None, validation_alias="DATASYNC_QUEUE_URL")
    database_url: SecretStr | None = Field(None, validation_alias="DATABASE_URL")
    # Outside local mode the database connection must be encrypted and the server's certificate
    # and host name verified (sslmode=verify-full). sslmode=require (or verify-ca) encrypts
    # without checking whom it talks to: accepted only when this says so.
    database_allow_unverified_tls: bool = Field(
        False, validation_alias="DATASYNC_DATABASE_ALLOW_UNVERIFIED_TLS"
    )
    # libpq's own default sslmode, used when DATABASE_URL does not name one.
    pgsslmode: str | None = Field(None, validation_alias="PGSSLMODE")
    # How a consumer finds its tables: "migrate" applies the pending migrations at start (local
    # and dev); "check" only reads the schema's version and refuses to write while it is behind
    # (the chart: its role may not CREATE, the migration Job migrates).
    store_schema: Literal["migrate", "check"] = Field(
        "migrate", validation_alias="DATASYNC_STORE_SCHEMA"
    )
    # `datasync-migrate`: the database URL of a role that may CREATE (the schema's owner); unset,
    # it uses DATABASE_URL. Consumers never read it.
    database_migration_url: SecretStr | None = Field(
        None, validation_alias="DATABASE_MIGRATION_URL"
    )
    store_dir: Path = Field(Path("var/stores"), validation_alias="DATASYNC_STORE_DIR")
    health_port: int = Field(0, ge=0, le=65535, validation_alias="DATASYNC_HEALTH_PORT")
    # SQS long-poll wait of a consumer's receive. 20 s (the SQS maximum) keeps empty receives
    # rare on AWS, where each one is billed; a consumer stops within this long of SIGTERM.
    receive_wait_seconds: int = Field(
        20, ge=0, le=20, validation_alias="DATASYNC_RECEIVE_WAIT_SECONDS"
    )
    # After a partial batch a consumer waits this long before receiving again, so that messages
    # gather and the next call takes several: fewer calls per record, at most this much latency.
    receive_batch_window_seconds: float = Field(
        0.2, ge=0, le=5, validation_alias="DATASYNC_RECEIVE_BATCH_WINDOW_SECONDS"
    )

    analytics_hash_key: SecretStr | None = Field(
        None, validation_alias="DATASYNC_ANALYTICS_HASH_KEY"
    )

    @field_validator(
        "aws_endpoint_url",
        "queue_url",
        "database_url",
        "database_migration_url",
        "api_metrics_url",
        "dashboard_sessions_table",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("consumer_metrics_urls", mode="before")
    @classmethod
    def _destination_urls(cls, value: object) -> object:
        """``crm=URL,marketing=URL``: one URL per destination of the contract."""
        if not isinstance(value, str):
            return value
        urls = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            destination, equals, url = item.partition("=")
            if not equals or destination.strip() not in DESTINATIONS or not url.strip():
                raise ValueError(
                    f"{item!r} is not <destination>=<url> with a destination of "
                    f"{', '.join(DESTINATIONS)}"
                )
            urls[destination.strip()] = url.strip()
        return urls

    @classmethod
    def load(cls) -> Settings:
        """Environment first, then the local dotenv file if there is one.

        The file's values are exported into the process environment (without overriding
        anything already set) so that boto3 sees the emulator's credentials too.
        """
        path = env_file()
        if path.is_file():
            from dotenv import load_dotenv

            load_dotenv(path, override=False)
        return cls()

    def api_key_list(self) -> list[str]:
        """The API keys; outside local mode at least one, each of MIN_API_KEY_LENGTH or more."""
        keys = [k.strip() for k in self.api_keys.get_secret_value().split(",") if k.strip()]
        if not keys and self.env == "local":
            return [LOCAL_API_KEY]
        if not keys:
            raise ConfigError(
                "DATASYNC_API_KEYS is empty: set it to one or more comma-separated API keys of "
                f"{MIN_API_KEY_LENGTH}+ characters, e.g. from `{MAKE_A_KEY}` "
                "(DATASYNC_ENV=local uses the development key instead)"
            )
        short = [str(n) for n, key in enumerate(keys, 1) if len(key) < MIN_API_KEY_LENGTH]
        if short and self.env != "local":
            which = f"key {short[0]} is" if len(short) == 1 else f"keys {', '.join(short)} are"
            raise ConfigError(
                f"DATASYNC_API_KEYS: {which} (of {len(keys)}) shorter than {MIN_API_KEY_LENGTH} "
                "characters, too easy to guess outside DATASYNC_ENV=local; make each key with "
                f"`{MAKE_A_KEY}`"
            )
        return keys

    def destination_queue_url(self, destination: str, kind: str = "queue") -> str | None:
        """A destination's queue URL of one kind (queue, dlq, buffer_queue), or None if unset."""
        if destination not in DESTINATIONS or kind not in QUEUE_KINDS:
            raise ValueError(f"unknown destination queue {destination!r}/{kind!r}")
        return getattr(self, f"{destination}_{kind}_url")

    def queue_url_for(self, destination: str) -> str:
        url = self.destination_queue_url(destination)
        if not url:
            raise ConfigError(
                f"no queue URL for {destination}: set {queue_setting_name(destination, 'queue')} "
                "or run `make run`, which writes var/local/datasync.env"
            )
        return url

    def buffer_queue_url_for(self, destination: str) -> str:
        url = self.destination_queue_url(destination, "buffer_queue")
        if not url:
            name = queue_setting_name(destination, "buffer_queue")
            raise ConfigError(
                f"no buffer queue URL for {destination}: set {name} (output buffer_queue_urls)"
            )
        return url

    def dlq_url_for(self, destination: str) -> str | None:
        return self.destination_queue_url(destination, "dlq")

    def database_dsn(self) -> str | None:
        return self.database_url.get_secret_value() if self.database_url else None
