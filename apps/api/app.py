"""The Flask application factory: every object the API needs is built here, once."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from apps.api import metrics
from apps.api.auth import ApiKeys
from apps.api.correlation import correlation_id_of
from apps.api.dashboard import init_dashboard
from apps.api.errors import MAX_BODY_BYTES, register_error_handlers
from apps.api.headers import HSTS, SECURITY_HEADERS
from apps.api.openapi import build_openapi
from apps.api.ratelimit import FailedAuthentications, RateLimiter
from apps.api.readiness import Readiness
from apps.api.routes import batches, health, users
from datasync.core.aws import client
from datasync.core.bus import CircuitBreaker, EventPublisher
from datasync.core.logging import configure_logging
from datasync.settings import ConfigError, Settings

logger = logging.getLogger("datasync.api")


@dataclass
class ApiState:
    publisher: Any
    api_keys: ApiKeys
    rate_limiter: RateLimiter
    readiness: Readiness
    openapi: dict[str, Any]


def create_app(settings: Settings | None = None, publisher: Any = None) -> Flask:
    """Build the app. Tests pass a fake publisher; production builds the EventBridge one."""
    settings = settings or Settings.load()
    configure_logging("datasync-api", settings.log_level)
    # ConfigError for keys that are missing, too short outside local mode or not header-safe.
    api_keys = ApiKeys(
        settings.api_key_list(), FailedAuthentications(settings.api_auth_failures_per_minute)
    )
    if publisher is None:
        publisher = build_publisher(settings)

    app = Flask(__name__)
    if settings.api_trusted_proxies:
        # The client's address (failed-authentication limit) is the one its proxies name, and
        # the scheme (HSTS) the one they were reached by. Without trusted proxies both headers
        # are ignored: any client could write them (gunicorn's own reading of them is off).
        trusted = settings.api_trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=trusted, x_proto=trusted)  # type: ignore[method-assign]
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    # No implicit OPTIONS answers: the OpenAPI document lists every method the API serves.
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["datasync"] = ApiState(
        publisher=publisher,
        api_keys=api_keys,
        rate_limiter=RateLimiter(settings.api_rate_limit, settings.api_rate_limit_burst),
        readiness=Readiness(publisher),
        openapi=build_openapi(),
    )
    app.register_blueprint(users)
    app.register_blueprint(batches)
    app.register_blueprint(health)
    init_dashboard(app, settings)
    register_error_handlers(app)
    app.before_request(_start_request)
    app.after_request(_finish_request)
    return app


def build_publisher(settings: Settings) -> EventPublisher:
    """The EventBridge publisher: no SDK retries, so that the budget bounds the whole publish."""
    attempt = settings.publish_connect_timeout_seconds + settings.publish_read_timeout_seconds
    if attempt > settings.publish_budget_seconds:
        raise ConfigError(
            "DATASYNC_PUBLISH_CONNECT_TIMEOUT_SECONDS + DATASYNC_PUBLISH_READ_TIMEOUT_SECONDS "
            f"({attempt:g}s) must not exceed DATASYNC_PUBLISH_BUDGET_SECONDS "
            f"({settings.publish_budget_seconds:g}s): lower the timeouts or raise the budget"
        )
    observer = metrics.PrometheusPublishObserver()
    events = client(
        "events",
        region=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url,
        connect_timeout=settings.publish_connect_timeout_seconds,
        read_timeout=settings.publish_read_timeout_seconds,
        attempts=1,
    )
    return EventPublisher(
        events,
        settings.event_bus_name,
        budget_seconds=settings.publish_budget_seconds,
        attempt_timeout=attempt,
        max_in_flight=settings.publish_max_in_flight,
        linger_seconds=settings.publish_linger_seconds,
        breaker=CircuitBreaker(
            settings.breaker_failures, settings.breaker_cooldown_seconds, observer=observer
        ),
        observer=observer,
    )


def _start_request() -> None:
    g.started = time.perf_counter()
    g.correlation_id = correlation_id_of(request.headers)


def _finish_request(response: Response) -> Response:
    response.headers["X-Correlation-ID"] = g.get("correlation_id", "")
    response.headers.update(g.get("security_headers", SECURITY_HEADERS))  # pages: their CSP
    if request.is_secure:  # TLS to this server, or to the trusted proxy in front of it
        response.headers["Strict-Transport-Security"] = HSTS
    seconds = time.perf_counter() - g.get("started", time.perf_counter())
    route = request.url_rule.rule if request.url_rule else None
    metrics.observe_request(route, request.method, response.status_code, seconds)
    if request.path not in ("/healthz", "/readyz"):
        # Route template, not the URL: ids in paths are fine, but bodies never get logged.
        logger.info(
            "request",
            extra={
                "method": request.method,
                "route": route,
                "status": response.status_code,
                "duration_ms": round(seconds * 1000, 2),
                "correlation_id": g.get("correlation_id"),
                "event_id": g.get("event_id"),
                **g.get("batch", {}),  # a batch: how many users were accepted and refused
            },
        )
    return response
