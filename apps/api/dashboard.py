"""The status page: /dashboard (HTML) and /dashboard/data (JSON), read-only, behind the API keys.

A script or curl sends the API's usual headers. A browser gets a login form instead, and the
key it posts opens a server-side session (apps/api/sessions.py): the cookie is a random token
that says nothing about the key, and logging out ends the session in every worker and pod.
SameSite=Strict keeps the cookie off cross-site requests, and the two POSTs (login, logout)
also refuse another site's Origin.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)

from apps.api.dashboard_data import StatusCollector
from apps.api.errors import ApiError
from apps.api.headers import PAGE_SECURITY_HEADERS
from apps.api.sessions import (
    STORE_TIMEOUT_SECONDS,
    DynamoSessionStore,
    Sessions,
    SessionStoreUnavailable,
)
from datasync.core.aws import client
from datasync.settings import Settings

logger = logging.getLogger("datasync.api")

COOKIE = "datasync_dashboard"

dashboard = Blueprint(
    "dashboard",
    __name__,
    url_prefix="/dashboard",
    template_folder="templates",
    static_folder="static",
)


@dataclass
class Dashboard:
    sessions: Sessions
    collector: Any  # StatusCollector, or a fake in tests
    secure_cookie: bool


def init_dashboard(app: Flask, settings: Settings, collector: Any = None) -> None:
    """Serve the status page unless DATASYNC_DASHBOARD_ENABLED=false."""
    if not settings.dashboard_enabled:
        return
    app.extensions["datasync.dashboard"] = Dashboard(
        sessions=Sessions(
            app.extensions["datasync"].api_keys,
            session_store(settings),
            settings.dashboard_session_hours * 3600,
        ),
        collector=collector or StatusCollector.from_settings(settings),
        secure_cookie=settings.env != "local",  # locally the API is plain http
    )
    app.register_blueprint(dashboard)


def session_store(settings: Settings) -> DynamoSessionStore | None:
    table = settings.dashboard_sessions_table
    if not table:
        logger.warning(
            "status page: browser logins are off until DATASYNC_DASHBOARD_SESSIONS_TABLE is set "
            "(Terraform output dashboard_sessions_table); API keys in headers still work"
        )
        return None

    def dynamodb() -> Any:
        return client(
            "dynamodb",
            region=settings.aws_region,
            endpoint_url=settings.aws_endpoint_url,
            connect_timeout=STORE_TIMEOUT_SECONDS / 2,
            read_timeout=STORE_TIMEOUT_SECONDS,
            attempts=2,
        )

    return DynamoSessionStore(table, dynamodb)


def _state() -> Dashboard:
    return current_app.extensions["datasync.dashboard"]


def _viewer() -> str | None:
    """The caller's key fingerprint: API headers (a wrong one is 401) or the session cookie
    (SessionStoreUnavailable if the sessions cannot be read)."""
    if "Authorization" in request.headers or "X-API-Key" in request.headers:
        return current_app.extensions["datasync"].api_keys.authenticate()
    cookie = request.cookies.get(COOKIE)
    return _state().sessions.check(cookie) if cookie else None


def _store_unavailable(exc: SessionStoreUnavailable) -> ApiError:
    logger.warning("status page: session store unavailable", extra={"error": str(exc)})
    return ApiError(
        503,
        "Session store unavailable",
        f"Browser sessions cannot be checked now ({exc}). Retry after Retry-After seconds, or "
        "send an API key as 'X-API-Key'.",
        headers={"Retry-After": "5"},
    )


def _page(template: str, code: int = 200, **context: Any) -> tuple[str, int]:
    # The one place these pages get the CSP that lets their own script and style load.
    g.security_headers = PAGE_SECURITY_HEADERS
    return render_template(template, **context), code


def _login_form(error: str | None = None, status: int = 401) -> tuple[str, int]:
    return _page("dashboard/login.html", status, error=error)


def _refuse_other_origins() -> None:
    """CSRF: a POST must come from this page.

    Browsers send Sec-Fetch-Site (which no page can set) and Origin with a form's POST; Origin
    is "null" from a page with a no-referrer policy, so Sec-Fetch-Site decides then. A request
    with neither comes from no browser, so it cannot carry a victim's cookie or key.
    """
    site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    if (
        (site is not None and site not in ("same-origin", "none"))
        or (origin not in (None, "null") and urlsplit(origin).netloc != request.host)
        or (origin == "null" and site is None)
    ):
        raise ApiError(403, "Forbidden", "This form only accepts posts from the status page.")


@dashboard.get("")
def page() -> tuple[str, int] | tuple[str, int, dict[str, str]]:
    try:
        viewer = _viewer()
    except SessionStoreUnavailable as exc:
        unavailable = _store_unavailable(exc)
        html, status = _login_form(unavailable.detail, status=unavailable.status)
        return html, status, unavailable.headers or {}
    if viewer is None:
        return _login_form()
    return _page("dashboard/page.html", status=_state().collector.snapshot())


@dashboard.get("/data")
def data() -> Response:
    try:
        viewer = _viewer()
    except SessionStoreUnavailable as exc:
        raise _store_unavailable(exc) from None
    if viewer is None:
        raise ApiError(
            401,
            "Unauthorized",
            "Send an API key as 'Authorization: Bearer <key>' or 'X-API-Key', or log in at "
            "/dashboard.",
            headers={"WWW-Authenticate": 'Bearer realm="datasync"'},
        )
    return jsonify(_state().collector.snapshot())


@dashboard.post("/login")
def login() -> Response | tuple[str, int] | tuple[str, int, dict[str, str]]:
    _refuse_other_origins()
    keys = current_app.extensions["datasync"].api_keys
    try:
        keys.refuse_if_throttled()
    except ApiError as throttled:  # the form again, saying when to retry
        html, status = _login_form(throttled.detail, status=throttled.status)
        return html, status, throttled.headers or {}
    state = _state()
    try:
        cookie = state.sessions.login(request.form.get("api_key", ""))
    except SessionStoreUnavailable as exc:  # the key was right; the session cannot be kept
        unavailable = _store_unavailable(exc)
        html, status = _login_form(unavailable.detail, status=unavailable.status)
        return html, status, unavailable.headers or {}
    if cookie is None:
        keys.record_failure()
        logger.warning("dashboard login refused")  # never the key, not even its fingerprint
        return _login_form("That API key is not valid.")
    response = redirect(url_for("dashboard.page"), 303)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=state.sessions.lifetime_seconds,
        path=url_for("dashboard.page"),
        secure=state.secure_cookie,
        httponly=True,
        samesite="Strict",
    )
    return response


@dashboard.post("/logout")
def logout() -> Response:
    """Ends the session server-side, then forgets the cookie: a copy of it is worthless now."""
    _refuse_other_origins()
    cookie = request.cookies.get(COOKIE)
    if cookie:
        try:
            _state().sessions.logout(cookie)
        except SessionStoreUnavailable as exc:  # keep the cookie: the session still lives
            raise _store_unavailable(exc) from None
    response = redirect(url_for("dashboard.page"), 303)
    response.delete_cookie(
        COOKIE,
        path=url_for("dashboard.page"),
        secure=_state().secure_cookie,
        httponly=True,
        samesite="Strict",
    )
    return response
