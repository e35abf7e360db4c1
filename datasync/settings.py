"""Settings of the API, the consumers and the operator CLI (ground floor), read in one place.

They come from the environment and, locally, from a dotenv file: `make run` writes
``var/local/datasync.env`` from the Terraform outputs. Real environment variables win over the
file. On Kubernetes the same variables come from a ConfigMap and Secrets.

One class for the three runtimes rather than one each: they share one env file, one ConfigMap
and most settings (region, endpoint, queues, stores), and the core's helpers that take the
settings serve all three. Each field says which runtime reads it (``read_by``) and what it
means; docs/configuration.md is generated from them (`make docs`). The other runtime boundaries
read theirs in lambdas/config.py, devstack/settings.py and bench/config.py.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from datasync.contract import DESTINATIONS
from datasync.local_layout import (
    API_PORT_SETTING,
    CHECKOUT,
    DEFAULT_API_PORT,
    LOCAL_API_KEY,
    QUEUE_KINDS,
    VAR_DIR_SETTING,
    Layout,
    queue_setting_name,
)
from datasync.variables import Variable

# Outside local mode an API key must be at least this long: a key that can be guessed is no lock.
MIN_API_KEY_LENGTH = 32
MAKE_A_KEY = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
# Only for local emulators: hashes are not secret if the key is public, and that is fine there.
LOCAL_ANALYTICS_HASH_KEY = "local-dev-analytics-hash-key"
DEFAULT_ENV_FILE = Layout(Path("var")).env_file  # var/local/datasync.env, from the checkout
DEFAULT_VAR_DIR = CHECKOUT / "var"
DEFAULT_AWS_REGION = "us-east-1"

# The runtimes, as the configuration table's "read by" column names them.
API, CONSUMER, CLI = "API", "consumer", "CLI"


class ConfigError(RuntimeError):
    """A setting is missing or wrong; the message says what to set."""


def config_error(exc: ValidationError) -> ConfigError:
    """Invalid settings as a ConfigError that names each variable and what is wrong with it."""
    problems = "; ".join(
        f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_input=False)
    )
    return ConfigError(f"invalid settings: {problems}")


def doc(*read_by: str, allowed: str = "", variable: str = "") -> dict[str, Any]:
    """A field's ``json_schema_extra`` for the configuration table: the runtimes that read it,
    and, where its type does not say it, the values it takes (or the variable's name pattern)."""
    return {"read_by": list(read_by), "allowed": allowed, "variable": variable}


class _EnvFileSetting(BaseSettings):
    """Read before the env file (it names the file); the base of Settings."""

    model_config = SettingsConfigDict(extra="ignore")

    env_file: Path = Field(
        DEFAULT_ENV_FILE,
        validation_alias="DATASYNC_ENV_FILE",
        description="The dotenv file read after the environment (real variables win); `make run` "
        "writes it from the Terraform outputs. The default is relative to the working directory",
        json_schema_extra=doc(API, CONSUMER, CLI),
    )


# Every destination has three queues, named in the local layout's env file the same way
# (QUEUE_KINDS, queue_setting_name): adding a destination to the contract gives it settings.
_QUEUE_MEANINGS = {
    "queue": ("the queue its consumer reads (Terraform output `queue_urls`)", (API, CONSUMER, CLI)),
    "dlq": ("its dead-letter queue (`dlq_urls`)", (API, CLI)),
    "buffer_queue": (
        "the buffer queue its Lambda reads; `datasync replay` and `dlq redrive` send to it "
        "(`buffer_queue_urls`)",
        (API, CLI),
    ),
}
_DestinationQueueUrls = create_model(  # type: ignore[call-overload]
    "_DestinationQueueUrls",
    __base__=_EnvFileSetting,
    **{
        f"{destination}_{kind}_url": (
            str | None,
            Field(
                None,
                validation_alias=queue_setting_name(destination, kind),
                description=f"For each destination ({', '.join(DESTINATIONS)}): "
                + _QUEUE_MEANINGS[kind][0],
                json_schema_extra=doc(
                    *_QUEUE_MEANINGS[kind][1],
                    allowed="URL",
                    variable=queue_setting_name("<DEST>", kind),
                ),
            ),
        )
        for destination in DESTINATIONS
        for kind in QUEUE_KINDS
    },
)


class Settings(_DestinationQueueUrls):
    model_config = SettingsConfigDict(extra="ignore", env_file_encoding="utf-8")

    env: Literal["local", "aws"] = Field(
        "aws",
        validation_alias="DATASYNC_ENV",
        description="`local` (an emulator: the development API key and SQLite stores are "
        "accepted) or `aws`. Outside `local` the API refuses to start (exit 5) without keys, or "
        "with a key shorter than 32 characters, and consumers refuse SQLite",
        json_schema_extra=doc(API, CONSUMER, CLI),
    )
    api_keys: SecretStr = Field(
        SecretStr(""),
        validation_alias="DATASYNC_API_KEYS",
        description="Comma-separated API keys, 32+ characters each outside local mode (`make "
        f"run`: `{LOCAL_API_KEY}` unless set). Removing a key ends its status-page sessions",
        json_schema_extra=doc(API, CLI, allowed="text (secret)"),
    )
    log_level: str = Field(
        "INFO",
        validation_alias="DATASYNC_LOG_LEVEL",
        description="Log level of the JSON logs (consumers write one line per batch with every "
        "event id and correlation id, and one per failure)",
        json_schema_extra=doc(API, CONSUMER, allowed="DEBUG, INFO, WARNING, ERROR"),
    )

    aws_region: str = Field(
        DEFAULT_AWS_REGION,
        validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"),
        description="AWS region (Terraform output `region`)",
        json_schema_extra=doc(API, CONSUMER, CLI),
    )
    aws_endpoint_url: str | None = Field(
        None,
        validation_alias="AWS_ENDPOINT_URL",
        description="Only for an emulator: where its AWS API listens (`make run` sets it)",
        json_schema_extra=doc(API, CONSUMER, CLI, allowed="URL"),
    )
    event_bus_name: str = Field(
        "datasync-bus",
        validation_alias="DATASYNC_EVENT_BUS_NAME",
        description="The EventBridge bus the API publishes to (Terraform output `event_bus_name`)",
        json_schema_extra=doc(API, CLI),
    )
    event_bus_arn: str | None = Field(
        None,
        validation_alias="DATASYNC_EVENT_BUS_ARN",
        description="The bus's ARN, where `datasync replay` sends archived events "
        "(`event_bus_arn`)",
        json_schema_extra=doc(CLI, allowed="ARN"),
    )
    archive_arn: str | None = Field(
        None,
        validation_alias="DATASYNC_ARCHIVE_ARN",
        description="The bus archive `datasync replay` replays from (`archive_arn`)",
        json_schema_extra=doc(CLI, allowed="ARN"),
    )
    # Every live event passes the intake queue once, before any destination's queue.
    intake_queue_url: str | None = Field(
        None,
        validation_alias="DATASYNC_INTAKE_QUEUE_URL",
        description="The intake queue every live event passes once (`intake_queue_url`)",
        json_schema_extra=doc(API, CLI, allowed="URL"),
    )
    intake_dlq_url: str | None = Field(
        None,
        validation_alias="DATASYNC_INTAKE_DLQ_URL",
        description="The intake's dead-letter queue (`intake_dlq_url`)",
        json_schema_extra=doc(API, CLI, allowed="URL"),
    )

    # API publishing: the budget bounds a whole publish (attempts and backoff); one attempt's
    # worst case, connect + read timeout, must fit in it. The breaker opens after that many
    # publishes in a row failed, for the cool-down, then lets one probe through.
    publish_budget_seconds: float = Field(
        2.0,
        gt=0,
        le=30,
        validation_alias="DATASYNC_PUBLISH_BUDGET_SECONDS",
        description="Time bound of one whole publish to the bus, retries included",
        json_schema_extra=doc(API),
    )
    publish_connect_timeout_seconds: float = Field(
        0.3,
        gt=0,
        validation_alias="DATASYNC_PUBLISH_CONNECT_TIMEOUT_SECONDS",
        description="Connect timeout of one `PutEvents` attempt; with the read timeout it must "
        "fit in the publish budget, or the API refuses to start",
        json_schema_extra=doc(API),
    )
    publish_read_timeout_seconds: float = Field(
        0.6,
        gt=0,
        validation_alias="DATASYNC_PUBLISH_READ_TIMEOUT_SECONDS",
        description="Read timeout of one `PutEvents` attempt (see the connect timeout)",
        json_schema_extra=doc(API),
    )
    # Micro-batching: concurrent publishes of a worker process share PutEvents calls, at most
    # this many calls at once; a sender may linger this long for its batch to fill.
    publish_max_in_flight: int = Field(
        2,
        ge=1,
        le=32,
        validation_alias="DATASYNC_PUBLISH_MAX_IN_FLIGHT",
        description="Micro-batching, per worker: `PutEvents` calls at once; while they are out, "
        "requests queue and share the next call",
        json_schema_extra=doc(API),
    )
    publish_linger_seconds: float = Field(
        0.0,
        ge=0,
        le=0.05,
        validation_alias="DATASYNC_PUBLISH_LINGER_SECONDS",
        description="How long a `PutEvents` call may wait to fill while requests arrive faster "
        "than the calls in flight take them",
        json_schema_extra=doc(API),
    )
    breaker_failures: int = Field(
        5,
        ge=1,
        validation_alias="DATASYNC_BREAKER_FAILURES",
        description="Publishes failed in a row that open the circuit (then `503` at once)",
        json_schema_extra=doc(API),
    )
    breaker_cooldown_seconds: float = Field(
        5.0,
        gt=0,
        validation_alias="DATASYNC_BREAKER_COOLDOWN_SECONDS",
        description="How long the open circuit waits before it lets one probe through",
        json_schema_extra=doc(API),
    )
    # API per-key rate limit, a token bucket per worker process (0 turns it off).
    api_rate_limit: float = Field(
        500,
        ge=0,
        validation_alias="DATASYNC_API_RATE_LIMIT",
        description="Requests per second per API key and worker process (0: no limit)",
        json_schema_extra=doc(API),
    )
    api_rate_limit_burst: int = Field(
        1000,
        ge=1,
        validation_alias="DATASYNC_API_RATE_LIMIT_BURST",
        description="Burst of that rate limit",
        json_schema_extra=doc(API),
    )
    # Refused API keys a client address may send per minute (and at once) before it gets 429,
    # per worker process (0 turns it off); how many proxies in front of the API append to
    # X-Forwarded-For (0: the peer is the client; the chart sets 1 behind its Ingress).
    api_auth_failures_per_minute: int = Field(
        30,
        ge=0,
        validation_alias="DATASYNC_API_AUTH_FAILURES_PER_MINUTE",
        description="Wrong keys a client address may send at once and per minute before it gets "
        "`429`, per worker process (0: no limit)",
        json_schema_extra=doc(API),
    )
    api_trusted_proxies: int = Field(
        0,
        ge=0,
        le=5,
        validation_alias="DATASYNC_API_TRUSTED_PROXIES",
        description="Proxies in front of the API that append to `X-Forwarded-For` and set "
        "`X-Forwarded-Proto`; the client address and scheme are the ones they name (0: the peer, "
        "and neither header counts). Only those proxies may reach the API port then (the "
        "chart's NetworkPolicy; the chart sets 1 behind its Ingress)",
        json_schema_extra=doc(API),
    )
    # API server (gunicorn): bind, size, how long a new connection may stay silent (it waits in
    # the poller, holding no thread), and how long one request may take to arrive.
    api_host: str = Field(
        "127.0.0.1",
        validation_alias="API_HOST",
        description="Address gunicorn binds (a pod sets `0.0.0.0`)",
        json_schema_extra=doc(API, allowed="IP address"),
    )
    api_port: int = Field(
        DEFAULT_API_PORT,
        ge=0,
        le=65535,
        validation_alias=API_PORT_SETTING,
        description="Port gunicorn binds; `datasync send` sends to it when `DATASYNC_API_URL` is "
        "unset",
        json_schema_extra=doc(API, CLI),
    )
    api_url: str | None = Field(
        None,
        validation_alias="DATASYNC_API_URL",
        description="Where `datasync send` finds the API (unset or empty: the local one, on "
        "`API_PORT`)",
        json_schema_extra=doc(CLI, allowed="URL"),
    )
    # One worker by default: all requests then share its PutEvents calls (bigger batches, less
    # CPU in the API and the bus); one process's ~2 ms per request fits in one core at 200/s.
    gunicorn_workers: int = Field(
        1,
        ge=1,
        validation_alias="GUNICORN_WORKERS",
        description="gunicorn worker processes: one worker's requests share its `PutEvents` "
        "calls (apps/api/gunicorn_conf.py says what was measured)",
        json_schema_extra=doc(API),
    )
    gunicorn_threads: int = Field(
        16,
        ge=1,
        validation_alias="GUNICORN_THREADS",
        description="Threads per gunicorn worker; each serves one request at a time (a silent "
        "connection holds none)",
        json_schema_extra=doc(API),
    )
    api_first_byte_timeout_seconds: float = Field(
        1.0,
        gt=0,
        le=60,
        validation_alias="DATASYNC_API_FIRST_BYTE_TIMEOUT_SECONDS",
        description="How long a new connection may stay silent, waiting in the worker's poller "
        "without a thread, before it is closed",
        json_schema_extra=doc(API),
    )
    api_request_timeout_seconds: float = Field(
        5.0,
        gt=0,
        le=300,
        validation_alias="DATASYNC_API_REQUEST_TIMEOUT_SECONDS",
        description="How long a request may take to arrive once a thread picked it up; then "
        "`408` and the connection closes",
        json_schema_extra=doc(API),
    )
    # Prometheus /metrics of the API: a port of its own, never the public one (0: none). Bound
    # to loopback unless told otherwise (a pod sets 0.0.0.0 so that Prometheus can scrape it).
    api_metrics_port: int = Field(
        9102,
        ge=0,
        le=65535,
        validation_alias="DATASYNC_API_METRICS_PORT",
        description="Prometheus `/metrics` of all gunicorn workers, served by the master on a "
        "port of its own (0: none)",
        json_schema_extra=doc(API),
    )
    api_metrics_host: str = Field(
        "127.0.0.1",
        validation_alias="DATASYNC_API_METRICS_HOST",
        description="Address the metrics port binds (a pod sets `0.0.0.0`)",
        json_schema_extra=doc(API, allowed="IP address"),
    )
    # prometheus-client reads this variable itself; gunicorn_conf.py sets it when it is unset.
    prometheus_multiproc_dir: Path | None = Field(
        None,
        validation_alias="PROMETHEUS_MULTIPROC_DIR",
        description="Where the gunicorn workers write their metric samples; emptied at start "
        "(unset: a private directory on /dev/shm, removed at exit)",
        json_schema_extra=doc(API),
    )
    # Where the consumers' metrics of a running stack are scraped (`make run` writes them).
    consumer_metrics_urls: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        validation_alias="DATASYNC_CONSUMER_METRICS_URLS",
        description="Where the status page reads each consumer's metrics (`make run` writes them)",
        json_schema_extra=doc(API, allowed="`crm=URL,marketing=URL,...`"),
    )

    # The status page /dashboard (read-only, behind the API keys); a browser's login lasts this
    # long, as an item of the sessions table (Terraform output dashboard_sessions_table) that
    # every worker and pod reads: a logout ends it everywhere.
    dashboard_enabled: bool = Field(
        True,
        validation_alias="DATASYNC_DASHBOARD_ENABLED",
        description="The status page `/dashboard` (`false`: `404`)",
        json_schema_extra=doc(API),
    )
    dashboard_session_hours: float = Field(
        8,
        gt=0,
        le=24 * 7,
        validation_alias="DATASYNC_DASHBOARD_SESSION_HOURS",
        description="How long a browser's login to the status page lasts",
        json_schema_extra=doc(API),
    )
    dashboard_sessions_table: str | None = Field(
        None,
        validation_alias="DATASYNC_DASHBOARD_SESSIONS_TABLE",
        description="The DynamoDB table of the status page's browser sessions (Terraform output "
        "`dashboard_sessions_table`; unset: browsers cannot log in)",
        json_schema_extra=doc(API),
    )

    # Consumers: the queue to read (KEDA reads the same variable), and where to store.
    queue_url: str | None = Field(
        None,
        validation_alias="DATASYNC_QUEUE_URL",
        description="The queue a consumer reads (KEDA's trigger reads it too); unset: its "
        "destination's `DATASYNC_<DEST>_QUEUE_URL`",
        json_schema_extra=doc(CONSUMER, allowed="URL"),
    )
    database_url: SecretStr | None = Field(
        None,
        validation_alias="DATABASE_URL",
        description="PostgreSQL DSN. Required by consumers outside local mode, with "
        "`sslmode=verify-full` and `sslrootcert=<the CA's certificate file>` (Amazon RDS: its "
        "region's CA bundle; `sslrootcert=system` would look in the directory of psycopg's "
        "bundled OpenSSL, not the image's CAs, unless `SSL_CERT_FILE` names them): "
        "`postgresql://datasync:…@db.internal:5432/datasync?sslmode=verify-full&sslrootcert="
        "/etc/datasync/db-ca.pem`. Unset, locally: SQLite files in `DATASYNC_STORE_DIR`",
        json_schema_extra=doc(CONSUMER, CLI, allowed="URL (secret)"),
    )
    # Outside local mode the database connection must be encrypted and the server's certificate
    # and host name verified (sslmode=verify-full). sslmode=require (or verify-ca) encrypts
    # without checking whom it talks to: accepted only when this says so.
    database_allow_unverified_tls: bool = Field(
        False,
        validation_alias="DATASYNC_DATABASE_ALLOW_UNVERIFIED_TLS",
        description="`true` accepts `sslmode=require` or `verify-ca` outside local mode "
        "(encrypted, but the server's name is not checked; a warning is logged)",
        json_schema_extra=doc(CONSUMER),
    )
    pgsslmode: str | None = Field(
        None,
        validation_alias="PGSSLMODE",
        description="libpq's own default sslmode, which counts when `DATABASE_URL` names none",
        json_schema_extra=doc(CONSUMER, allowed="libpq's sslmode values"),
    )
    store_dir: Path = Field(
        Path("var/stores"),
        validation_alias="DATASYNC_STORE_DIR",
        description="Directory of the SQLite stores, when `DATABASE_URL` is unset (relative to "
        "the working directory)",
        json_schema_extra=doc(CONSUMER, CLI),
    )
    health_port: int = Field(
        0,
        ge=0,
        le=65535,
        validation_alias="DATASYNC_HEALTH_PORT",
        description="A consumer's `/healthz` (liveness), `/readyz` (readiness: `503` and the "
        "reason while the store cannot be used) and Prometheus `/metrics` port (0: none; `make "
        "run` picks a free one per consumer)",
        json_schema_extra=doc(CONSUMER),
    )
    store_schema: Literal["migrate", "check"] = Field(
        "migrate",
        validation_alias="DATASYNC_STORE_SCHEMA",
        description="How a consumer finds its tables: `migrate` applies the pending schema "
        "migrations at start (local and dev); `check` only reads the schema's version and, while "
        "it is behind, exits 5 saying to run `datasync-migrate` (the chart, beside its migration "
        "Job), so the consumer's role needs no CREATE",
        json_schema_extra=doc(CONSUMER),
    )
    database_migration_url: SecretStr | None = Field(
        None,
        validation_alias="DATABASE_MIGRATION_URL",
        description="`datasync-migrate`: the URL of a role that may CREATE (the schema's owner); "
        "unset, `DATABASE_URL`. `datasync-migrate [--destination D] [--check] [--wait S]` applies "
        "the versioned migrations of every store once: exit 0, 1 (a migration failed and was "
        "rolled back; `--check`: one is behind), 4 (no database within `--wait`), 5. Consumers "
        "never read it",
        json_schema_extra=doc("datasync-migrate", allowed="URL (secret)"),
    )
    receive_wait_seconds: int = Field(
        20,
        ge=0,
        le=20,
        validation_alias="DATASYNC_RECEIVE_WAIT_SECONDS",
        description="SQS long-poll wait of a consumer's receive: the SQS maximum keeps empty "
        "receives, each billed on AWS, rare. A consumer stops within this long of SIGTERM, so "
        "`make run` gives its consumers 5 unless this is set",
        json_schema_extra=doc(CONSUMER),
    )
    receive_batch_window_seconds: float = Field(
        0.2,
        ge=0,
        le=5,
        validation_alias="DATASYNC_RECEIVE_BATCH_WINDOW_SECONDS",
        description="After a receive of fewer than 10 messages, wait this long before the next, "
        "so that messages gather and one call takes several (0: off; a full batch is followed "
        "at once)",
        json_schema_extra=doc(CONSUMER),
    )

    analytics_hash_key: SecretStr | None = Field(
        None,
        validation_alias="DATASYNC_ANALYTICS_HASH_KEY",
        description="HMAC key of the analytics pseudonyms: `datasync get analytics` and `trace` "
        "look a user up by it",
        json_schema_extra=doc(CLI, allowed="text (secret)"),
    )
    var_dir: Path = Field(
        DEFAULT_VAR_DIR,
        validation_alias=VAR_DIR_SETTING,
        description="Where the local stack keeps its state: `datasync logs` and `trace` read its "
        "logs",
        json_schema_extra=doc(CLI),
    )

    @field_validator(
        "aws_endpoint_url",
        "queue_url",
        "database_url",
        "database_migration_url",
        "dashboard_sessions_table",
        "prometheus_multiproc_dir",
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
        path = _EnvFileSetting().env_file
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

    @property
    def logs_dir(self) -> Path:
        """Where the local stack's logs are (`datasync logs`, `datasync trace`)."""
        return Layout(self.var_dir).logs_dir

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


# -- the configuration table (docs/configuration.md) ---------------------------------------------
def documented(model: type[BaseSettings]) -> list[Variable]:
    """The environment variables of a settings class, as the configuration table shows them.

    Every field must have a description and say who reads it (``json_schema_extra=doc(...)``);
    the per-destination fields share one row, named by their pattern.
    """
    rows: dict[str, Variable] = {}
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if not info.description or not isinstance(extra, dict) or not extra.get("read_by"):
            raise ValueError(f"{model.__name__}.{name}: give it a description and doc(...)")
        alias = info.validation_alias
        names = list(alias.choices) if isinstance(alias, AliasChoices) else [str(alias)]
        first = str(extra.get("variable") or names[0])
        rows.setdefault(
            first,
            Variable(
                name=first,
                description=info.description,
                default=_default_text(info),
                allowed=str(extra.get("allowed") or _allowed_text(info)),
                read_by=tuple(str(r) for r in extra["read_by"]),  # type: ignore[union-attr]
                also=tuple(str(n) for n in names[1:]),
            ),
        )
    return sorted(rows.values(), key=lambda v: v.name)


def _default_text(info: FieldInfo) -> str | None:
    value = info.get_default(call_default_factory=True)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{Decimal(repr(value)).normalize():f}"
    if isinstance(value, Path) and value.is_absolute() and value.is_relative_to(CHECKOUT):
        return f"<checkout>/{value.relative_to(CHECKOUT).as_posix()}"  # in every checkout
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def _allowed_text(info: FieldInfo) -> str:
    kind = info.annotation
    if get_origin(kind) in (Union, UnionType):  # X | None: what it is when set
        kind = next(a for a in get_args(kind) if a is not type(None))
    if get_origin(kind) is Literal:
        return ", ".join(str(choice) for choice in get_args(kind))
    if kind is bool:
        return "true, false"
    if kind in (int, float):
        word = "integer" if kind is int else "number"
        # Field(ge=..., gt=..., le=...) keeps each bound as a metadata object of that attribute.
        bound = {
            b: getattr(m, b) for m in info.metadata for b in ("ge", "gt", "le") if hasattr(m, b)
        }
        if "ge" in bound and "le" in bound:
            return f"{word} {_number(bound['ge'])}–{_number(bound['le'])}"
        signs = {"gt": ">", "ge": "≥", "le": "≤"}
        limits = ", ".join(f"{signs[b]} {_number(v)}" for b, v in bound.items())
        return f"{word} {limits}".strip()
    return {Path: "path", SecretStr: "text (secret)"}.get(kind, "text")


def _number(value: object) -> str:
    return f"{Decimal(repr(value)).normalize():f}"
