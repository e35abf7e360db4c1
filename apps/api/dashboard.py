"""The status page: /dashboard (HTML) and /dashboard/data (JSON), read-only, behind the API keys.

A script or curl sends the API's usual headers. A browser gets a login form instead, and the
key it posts becomes a session cookie that holds no key: ``<fingerprint>.<expiry>.<mac>``, the
MAC keyed by a secret derived from that API key. So every gunicorn worker checks any worker's
cookie without shared state, removing a key from DATASYNC_API_KEYS ends its sessions, and a
cookie cannot be forged without the key. SameSite=Strict keeps the cookie off cross-site
requests, and the two POSTs (login, logout) also refuse another site's Origin.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable
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
from datasync.settings import Settings

logger = logging.getLogger("datasync.api")

COOKIE = "datasync_dashboard"
SESSION_LABEL = b"datasync dashboard session v1"

dashboard = Blueprint(
    "dashboard",
    __name__,
    url_prefix="/dashboard",
    template_folder="templates",
    static_folder="static",
)


def key_fingerprint(key: bytes) -> str:
    """The same 16 hex characters the API logs for a key."""
    return hashlib.sha256(key).hexdigest()[:16]


class Sessions:
    """Issues and checks the signed session cookies of the status page."""

    def __init__(
        self, keys: list[str], lifetime_seconds: float, clock: Callable[[], float] = time.time
    ):
        self._keys = {key_fingerprint(k.encode()): k.encode() for k in keys}
        # One secret per key, derived from it: no per-process secret (gunicorn runs several).
        self._secrets = {
            fp: hmac.new(key, SESSION_LABEL, hashlib.sha256).digest()
            for fp, key in self._keys.items()
        }
        self.lifetime_seconds = int(lifetime_seconds)
        self._clock = clock

    def login(self, presented: str) -> str | None:
        """A session cookie's value for a valid key, else None."""
        raw = presented.strip().encode("utf-8", errors="replace")
        fingerprint = key_fingerprint(raw)
        key = self._keys.get(fingerprint)
        if key is None or not hmac.compare_digest(raw, key):
            return None
        payload = f"{fingerprint}.{int(self._clock()) + self.lifetime_seconds}"
        return f"{payload}.{self._mac(fingerprint, payload)}"

    def check(self, cookie: str) -> str | None:
        """The key fingerprint of a valid, unexpired session cookie, else None."""
        fingerprint, _, rest = cookie.partition(".")
        expires, _, mac = rest.partition(".")
        if fingerprint not in self._secrets or not expires.isdigit():
            return None
        if not hmac.compare_digest(mac, self._mac(fingerprint, f"{fingerprint}.{expires}")):
            return None
        return fingerprint if int(expires) > self._clock() else None

    def _mac(self, fingerprint: str, payload: str) -> str:
        return hmac.new(self._secrets[fingerprint], payload.encode(), hashlib.sha256).hexdigest()


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
        sessions=Sessions(settings.api_key_list(), settings.dashboard_session_hours * 3600),
        collector=collector or StatusCollector.from_settings(settings),
        secure_cookie=settings.env != "local",  # locally the API is plain http
    )
    app.register_blueprint(dashboard)


def _state() -> Dashboard:
    return current_app.extensions["datasync.dashboard"]


def _viewer() -> str | None:
    """The caller's key fingerprint: API headers (a wrong one is 401) or the session cookie."""
    if "Authorization" in request.headers or "X-API-Key" in request.headers:
        return current_app.extensions["datasync"].api_keys.authenticate()
    cookie = request.cookies.get(COOKIE)
    return _state().sessions.check(cookie) if cookie else None


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
def page() -> tuple[str, int]:
    if _viewer() is None:
        return _login_form()
    return _page("dashboard/page.html", status=_state().collector.snapshot())


@dashboard.get("/data")
def data() -> Response:
    if _viewer() is None:
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
    cookie = state.sessions.login(request.form.get("api_key", ""))
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
    _refuse_other_origins()
    response = redirect(url_for("dashboard.page"), 303)
    response.delete_cookie(
        COOKIE,
        path=url_for("dashboard.page"),
        secure=_state().secure_cookie,
        httponly=True,
        samesite="Strict",
    )
    return response
