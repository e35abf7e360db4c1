"""The Flask application factory: every object the API needs is built here, once."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, g, request

from apps.api.auth import ApiKeys
from apps.api.errors import register_error_handlers
from apps.api.openapi import build_openapi
from apps.api.routes import health, users
from datasync.contract.events import is_valid_correlation_id
from datasync.core.aws import client
from datasync.core.bus import EventPublisher
from datasync.core.logging import configure_logging
from datasync.settings import Settings

MAX_BODY_BYTES = 64 * 1024
logger = logging.getLogger("datasync.api")


@dataclass
class ApiState:
    publisher: Any
    api_keys: ApiKeys
    openapi: dict[str, Any]
    ready: bool = False
    ready_checked_at: float = float("-inf")


def create_app(settings: Settings | None = None, publisher: Any = None) -> Flask:
    """Build the app. Tests pass a fake publisher; production builds the EventBridge one."""
    settings = settings or Settings.load()
    configure_logging("datasync-api", settings.log_level)
    api_keys = ApiKeys(settings.api_key_list())  # raises ConfigError outside local mode
    if publisher is None:
        events = client(
            "events",
            region=settings.aws_region,
            endpoint_url=settings.aws_endpoint_url,
            read_timeout=5,
            max_attempts=2,
        )
        publisher = EventPublisher(events, settings.event_bus_name)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["datasync"] = ApiState(publisher, api_keys, build_openapi())
    app.register_blueprint(users)
    app.register_blueprint(health)
    register_error_handlers(app)
    app.before_request(_start_request)
    app.after_request(_finish_request)
    return app


def _start_request() -> None:
    g.started = time.perf_counter()
    offered = request.headers.get("X-Correlation-ID", "")
    g.correlation_id = offered if is_valid_correlation_id(offered) else uuid.uuid4().hex


def _finish_request(response: Response) -> Response:
    response.headers["X-Correlation-ID"] = g.get("correlation_id", "")
    if request.path not in ("/healthz", "/readyz"):
        # Route template, not the URL: ids in paths are fine, but bodies never get logged.
        logger.info(
            "request",
            extra={
                "method": request.method,
                "route": request.url_rule.rule if request.url_rule else None,
                "status": response.status_code,
                "duration_ms": round(
                    (time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 2
                ),
                "correlation_id": g.get("correlation_id"),
                "event_id": g.get("event_id"),
            },
        )
    return response
