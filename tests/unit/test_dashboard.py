"""The status page: its login and session cookie, its headers, and how it gathers what it shows."""

from __future__ import annotations

import re

import pytest
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from apps.api.app import create_app
from apps.api.auth import ApiKeys, key_fingerprint
from apps.api.dashboard import COOKIE
from apps.api.dashboard_data import StatusCollector, histogram_quantile, parse_scrape
from apps.api.headers import PAGE_SECURITY_HEADERS, SECURITY_HEADERS
from apps.api.sessions import (
    TOKEN,
    DynamoSessionStore,
    Session,
    Sessions,
    SessionStoreUnavailable,
    token_hash,
)
from datasync.contract import DESTINATIONS
from datasync.settings import Settings
from tests.pipeline import free_port
from tests.unit.conftest import API_KEY, OTHER_KEY

LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900)  # docs/observability.md
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeCollector:
    """What the page renders, without AWS: one destination with a dead letter."""

    def __init__(self, reason: str = "record is not JSON"):
        self.reason = reason

    def snapshot(self):
        queue = {"visible": 2, "in_flight": 1, "error": None}
        failure = {
            "failed_at": "2026-12-01T10:00:00+00:00",
            "failure_stage": "consumer",
            "failure_reason": self.reason,
            "event_id": "",
            "correlation_id": "corr-1",
        }
        return {
            "generated_at": "2026-12-01T10:00:01Z",
            "window_seconds": 30.0,
            "destinations": [
                {
                    "name": d,
                    "queues": {"buffer_queue": queue, "queue": queue, "dlq": queue},
                    "consumer": {
                        "applied_total": 41,
                        "outcomes": {"applied": 41},
                        "applied_per_second": 1.5,
                        "lag_p50_seconds": 0.2,
                        "lag_p95_seconds": None,
                        "error": None,
                    },
                    "failures": {"items": [failure], "error": None},
                }
                for d in DESTINATIONS
            ],
        }


class MemorySessionStore:
    """The sessions table as a dict (DynamoSessionStore is tested against moto below); every
    app given the same one stands for the workers and pods that share the table."""

    def __init__(self):
        self.items: dict[str, Session] = {}
        self.gets = 0
        self.down: str | None = None  # set: every call fails like an unreachable table

    def put(self, token_hash, session):
        self._fail_if_down()
        self.items[token_hash] = session

    def get(self, token_hash):
        self._fail_if_down()
        self.gets += 1
        return self.items.get(token_hash)

    def delete(self, token_hash):
        self._fail_if_down()
        self.items.pop(token_hash, None)

    def _fail_if_down(self):
        if self.down:
            raise SessionStoreUnavailable(self.down)


def make_app(env: str = "aws", store: MemorySessionStore | None = None, **settings):
    values = {"DATASYNC_ENV": env, "DATASYNC_API_KEYS": f"{OTHER_KEY},{API_KEY}", **settings}
    app = create_app(Settings(**values), publisher=object())
    if "datasync.dashboard" in app.extensions:
        app.extensions["datasync.dashboard"].collector = FakeCollector()
        app.extensions["datasync.dashboard"].sessions.store = store or MemorySessionStore()
    return app


@pytest.fixture
def page_client():
    return make_app().test_client()


def log_in(client, key: str = API_KEY, **headers):
    return client.post("/dashboard/login", data={"api_key": key}, headers=headers)


def sessions_of(keys: list[str], store, clock=None) -> Sessions:
    return Sessions(ApiKeys(keys), store, 3600, clock=clock or Clock())


# -- the session cookie -----------------------------------------------------------------------
def test_a_session_cookie_is_a_random_token_that_holds_nothing_of_the_key():
    store = MemorySessionStore()
    sessions = sessions_of([OTHER_KEY, API_KEY], store)
    first, second = sessions.login(API_KEY), sessions.login(API_KEY)
    assert first != second and TOKEN.fullmatch(first) and TOKEN.fullmatch(second)
    fingerprint = key_fingerprint(API_KEY.encode())
    for cookie in (first, second):
        # no key, no hash of it, nothing keyed by it: nothing to test guesses against offline
        assert API_KEY not in cookie and fingerprint not in cookie
        assert sessions.check(cookie) == fingerprint
    # the table holds the token's hash, never the token
    assert set(store.items) == {token_hash(first), token_hash(second)}
    assert sessions.login("not-a-key") is None and sessions.login(API_KEY + "x") is None
    assert len(store.items) == 2


def test_every_worker_and_pod_sharing_the_table_accepts_the_cookie_and_sees_the_logout():
    store = MemorySessionStore()
    worker_a, worker_b = sessions_of([API_KEY], store), sessions_of([OTHER_KEY, API_KEY], store)
    cookie = worker_a.login(API_KEY)
    assert worker_b.check(cookie)
    worker_b.logout(cookie)
    assert worker_a.check(cookie) is None and worker_b.check(cookie) is None


def test_a_session_expires_after_its_lifetime():
    clock = Clock()
    sessions = sessions_of([API_KEY], MemorySessionStore(), clock)
    cookie = sessions.login(API_KEY)
    clock.now += 3599
    assert sessions.check(cookie)
    clock.now += 1  # DynamoDB's TTL removes the item later; it is refused from now on
    assert sessions.check(cookie) is None


def test_removing_a_key_ends_its_sessions():
    store = MemorySessionStore()
    cookie = sessions_of([OTHER_KEY, API_KEY], store).login(API_KEY)
    assert sessions_of([OTHER_KEY], store).check(cookie) is None


def test_a_session_that_cannot_be_stored_is_no_login():
    store = MemorySessionStore()
    store.down = "PutItem on t: ResourceNotFoundException"
    with pytest.raises(SessionStoreUnavailable, match="ResourceNotFoundException"):
        sessions_of([API_KEY], store).login(API_KEY)
    with pytest.raises(SessionStoreUnavailable, match="DATASYNC_DASHBOARD_SESSIONS_TABLE"):
        sessions_of([API_KEY], None).login(API_KEY)


@pytest.fixture
def dynamodb(aws):
    import boto3

    client = boto3.client("dynamodb", region_name="us-east-1")
    client.create_table(
        TableName="sessions",
        KeySchema=[{"AttributeName": "session", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "session", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return client


def test_the_dynamodb_store_keeps_ends_and_explains(dynamodb):
    """Two stores with clients of their own (two pods) on one table (moto's DynamoDB)."""
    pod_a = DynamoSessionStore("sessions", lambda: dynamodb)
    pod_b = DynamoSessionStore("sessions", lambda: __import__("boto3").client("dynamodb"))
    pod_a.put("h1", Session("fp", 1_900_000_000))
    assert pod_b.get("h1") == Session("fp", 1_900_000_000) and pod_b.get("h2") is None
    with pytest.raises(SessionStoreUnavailable):  # a token is stored once, never overwritten
        pod_b.put("h1", Session("other", 1))
    pod_b.delete("h1")
    assert pod_a.get("h1") is None
    missing = DynamoSessionStore("no-such-table", lambda: dynamodb)
    with pytest.raises(SessionStoreUnavailable, match="GetItem on no-such-table: Resource"):
        missing.get("h1")


# -- login, logout and header authentication ------------------------------------------------
def test_a_browser_without_credentials_gets_the_login_form(page_client):
    response = page_client.get("/dashboard")
    assert response.status_code == 401 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert 'action="/dashboard/login"' in html and 'name="api_key"' in html
    assert "crm" not in html  # nothing of the status before logging in


def test_the_data_needs_credentials_too(page_client):
    response = page_client.get("/dashboard/data")
    assert response.status_code == 401 and response.mimetype == "application/problem+json"


def test_a_wrong_key_gets_the_form_again_with_an_error_and_no_cookie(page_client):
    response = log_in(page_client, "wrong-key")
    assert response.status_code == 401
    assert "That API key is not valid." in response.get_data(as_text=True)
    assert "Set-Cookie" not in response.headers
    assert page_client.get("/dashboard/data").status_code == 401


def test_wrong_keys_at_the_login_form_count_against_the_address_like_the_apis():
    client = make_app(DATASYNC_API_AUTH_FAILURES_PER_MINUTE="2").test_client()
    assert [log_in(client, "guess").status_code for _ in range(2)] == [401, 401]
    throttled = log_in(client)  # even the right key, until the address may try again
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "30"
    assert "Too many API keys from this address" in throttled.get_data(as_text=True)
    assert "Set-Cookie" not in throttled.headers
    assert client.get("/dashboard/data", headers={"X-API-Key": API_KEY}).status_code == 429


def test_the_right_key_sets_a_strict_http_only_secure_cookie_and_shows_the_page(page_client):
    response = log_in(page_client)
    assert response.status_code == 303 and response.headers["Location"] == "/dashboard"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=") and API_KEY not in cookie
    for attribute in ("HttpOnly", "SameSite=Strict", "Secure", "Path=/dashboard", "Max-Age=28800"):
        assert attribute in cookie.split("; "), cookie
    page = page_client.get("/dashboard")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for destination in DESTINATIONS:
        assert f'id="destination-{destination}"' in html
    assert page_client.get("/dashboard/data").get_json()["destinations"][0]["name"] == "crm"


def test_locally_the_cookie_works_over_plain_http():
    response = log_in(make_app(env="local").test_client())
    assert response.status_code == 303 and "Secure" not in response.headers["Set-Cookie"]


def test_logout_clears_the_cookie(page_client):
    log_in(page_client)
    response = page_client.post("/dashboard/logout")
    assert response.status_code == 303
    assert re.search(rf"{COOKIE}=;.*Max-Age=0", response.headers["Set-Cookie"])
    assert page_client.get("/dashboard").status_code == 401


def cookie_of(response) -> str:
    match = re.match(rf"{COOKIE}=([^;]*);", response.headers["Set-Cookie"])
    assert match, response.headers.get("Set-Cookie")
    return match.group(1)


def test_logout_ends_the_session_in_every_worker_and_pod_even_for_a_kept_copy():
    """Two apps on one sessions table (two workers, or two pods): a copy of the cookie kept
    from before the logout is refused by both."""
    store = MemorySessionStore()
    worker_a, worker_b = make_app(store=store).test_client(), make_app(store=store).test_client()
    cookie = cookie_of(log_in(worker_a))
    worker_b.set_cookie(COOKIE, cookie, path="/dashboard")
    assert worker_b.get("/dashboard/data").status_code == 200
    assert worker_a.post("/dashboard/logout").status_code == 303
    for worker in (worker_a, worker_b):
        worker.set_cookie(COOKIE, cookie, path="/dashboard")  # the copy, sent again
        assert worker.get("/dashboard/data").status_code == 401
        assert worker.get("/dashboard").status_code == 401
    assert store.items == {}


MALFORMED_COOKIES = [
    "é" * 43,  # non-ASCII, the right length
    "\u00ff" + "a" * 42,
    "a" * 42,  # truncated
    "a" * 44,
    "+/" * 21 + "=",  # standard base64, not URL-safe
    "a" * 42 + "=",
    # the old signed format, with a real key's fingerprint: its MAC was compared as text
    f"{key_fingerprint(API_KEY.encode())}.1800003600.ab",
    f"{key_fingerprint(API_KEY.encode())}.1800003600." + "é" * 64,
    f"{key_fingerprint(API_KEY.encode())}.9999999999." + "0" * 64,
    "a\x00" * 21 + "b",
    "",
    "x" * 3000,
]


@pytest.mark.parametrize("cookie", MALFORMED_COOKIES, ids=range(len(MALFORMED_COOKIES)))
def test_a_malformed_cookie_gets_the_login_form_never_a_500(cookie):
    store = MemorySessionStore()
    client = make_app(store=store).test_client()
    client.set_cookie(COOKIE, cookie, path="/dashboard")
    page = client.get("/dashboard")
    assert page.status_code == 401 and 'name="api_key"' in page.get_data(as_text=True)
    data = client.get("/dashboard/data")
    assert data.status_code == 401 and data.mimetype == "application/problem+json"
    assert client.post("/dashboard/logout").status_code == 303
    assert store.gets == 0  # not even looked up


@settings(max_examples=200, deadline=None)
@given(
    cookie=st.text(max_size=80)
    | st.binary(max_size=80).map(lambda b: b.decode("latin-1"))
    | st.text(max_size=70).map(lambda t: f"{key_fingerprint(API_KEY.encode())}.1900000000.{t}")
)
def test_no_cookie_value_produces_a_server_error(cookie):
    client = make_app().test_client()
    client.set_cookie(COOKIE, cookie, path="/dashboard")
    for path in ("/dashboard", "/dashboard/data"):
        assert client.get(path).status_code == 401


def test_an_unreachable_session_table_is_a_503_that_says_so_and_logout_keeps_the_cookie():
    store = MemorySessionStore()
    client = make_app(store=store).test_client()
    cookie = cookie_of(log_in(client))
    store.down = "GetItem on sessions: EndpointConnectionError"
    page = client.get("/dashboard")
    assert page.status_code == 503 and page.headers["Retry-After"] == "5"
    assert "EndpointConnectionError" in page.get_data(as_text=True)
    data = client.get("/dashboard/data")
    assert data.status_code == 503 and "X-API-Key" in data.get_json()["detail"]
    logout = client.post("/dashboard/logout")
    assert logout.status_code == 503 and "Set-Cookie" not in logout.headers
    failed_login = log_in(make_app(store=store).test_client())
    assert failed_login.status_code == 503 and "Set-Cookie" not in failed_login.headers
    store.down = None
    client.set_cookie(COOKIE, cookie, path="/dashboard")
    assert client.get("/dashboard/data").status_code == 200  # the session outlived the outage


def test_without_a_sessions_table_a_browser_is_told_what_to_set_and_headers_still_work():
    app = make_app()
    app.extensions["datasync.dashboard"].sessions.store = None
    client = app.test_client()
    login = log_in(client)
    assert login.status_code == 503
    assert "DATASYNC_DASHBOARD_SESSIONS_TABLE" in login.get_data(as_text=True)
    assert client.get("/dashboard/data", headers={"X-API-Key": API_KEY}).status_code == 200


@pytest.mark.parametrize(
    "headers", [{"X-API-Key": API_KEY}, {"Authorization": f"Bearer {OTHER_KEY}"}]
)
def test_the_api_headers_work_without_a_login(page_client, headers):
    response = page_client.get("/dashboard/data", headers=headers)
    assert response.status_code == 200 and len(response.get_json()["destinations"]) == 3
    assert page_client.get("/dashboard", headers=headers).status_code == 200


def test_a_wrong_header_is_not_rescued_by_a_session(page_client):
    log_in(page_client)
    response = page_client.get("/dashboard/data", headers={"X-API-Key": "wrong"})
    assert response.status_code == 401


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost"},
        {"Sec-Fetch-Site": "same-origin", "Origin": "https://evil.example"},
    ],
)
def test_posts_from_another_site_are_refused(page_client, headers):
    assert log_in(page_client, **headers).status_code == 403
    assert page_client.post("/dashboard/logout", headers=headers).status_code == 403


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://localhost"},
        {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"},
        {"Origin": "null", "Sec-Fetch-Site": "same-origin"},  # a no-referrer page's own form
        {},  # no browser: curl
    ],
)
def test_a_post_from_the_page_itself_is_accepted(page_client, headers):
    assert log_in(page_client, **headers).status_code == 303


def test_the_page_can_be_turned_off():
    client = make_app(DATASYNC_DASHBOARD_ENABLED="false").test_client()
    assert client.get("/dashboard", headers={"X-API-Key": API_KEY}).status_code == 404


# -- headers and content -------------------------------------------------------------------
def test_only_the_html_pages_get_the_relaxed_csp(page_client):
    for response in (page_client.get("/dashboard"), log_in(page_client, "wrong")):
        assert response.headers["Content-Security-Policy"] == PAGE_CSP
        assert "sandbox" not in response.headers["Content-Security-Policy"]
        for name, value in PAGE_SECURITY_HEADERS.items():
            assert response.headers[name] == value
    log_in(page_client)
    assert page_client.get("/dashboard").headers["Content-Security-Policy"] == PAGE_CSP
    for strict in (page_client.get("/dashboard/data"), page_client.get("/healthz")):
        for name, value in SECURITY_HEADERS.items():
            assert strict.headers[name] == value


def test_the_page_has_no_inline_script_or_style(page_client):
    log_in(page_client)
    html = page_client.get("/dashboard").get_data(as_text=True)
    assert re.findall(r"<script[^>]*>", html) == [
        '<script src="/dashboard/static/dashboard.js" defer>'
    ]
    assert "<style" not in html and " style=" not in html and " on" not in html.lower()
    assert page_client.get("/dashboard/static/dashboard.js").status_code == 200


def test_a_failure_reason_is_shown_as_text_never_as_markup():
    app = make_app()
    app.extensions["datasync.dashboard"].collector = FakeCollector("<script>alert(1)</script>")
    client = app.test_client()
    html = client.get("/dashboard", headers={"X-API-Key": API_KEY}).get_data(as_text=True)
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


# -- gathering ---------------------------------------------------------------------------
def metrics_text(applied: int, lags: list[float], destination: str = "crm") -> str:
    registry = CollectorRegistry()
    records = Counter(
        "datasync_consumer_records", "", ["destination", "outcome"], registry=registry
    )
    lag = Histogram(
        "datasync_consumer_lag_seconds", "", ["destination"], buckets=LAG_BUCKETS, registry=registry
    )
    records.labels(destination, "applied").inc(applied)
    records.labels(destination, "dead_lettered").inc(2)
    for seconds in lags:
        lag.labels(destination).observe(seconds)
    return generate_latest(registry).decode()


def test_histogram_quantile_interpolates_within_the_bucket():
    buckets = ((0.1, 0.0), (0.25, 4.0), (0.5, 8.0), (float("inf"), 10.0))
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.25 + 0.25 * (1 / 4))
    assert histogram_quantile(0.2, buckets) == pytest.approx(0.1 + 0.15 * (2 / 4))
    assert histogram_quantile(0.95, buckets) == 0.5  # in +Inf: the last finite bound
    assert histogram_quantile(0.5, ((1.0, 0.0), (float("inf"), 0.0))) is None


def test_parse_scrape_reads_only_its_destination():
    text = metrics_text(7, [0.3]) + metrics_text(99, [], destination="marketing")
    scrape = parse_scrape(text.replace("# HELP", "# X"), "crm", at=0)
    assert scrape.outcomes == {"applied": 7, "dead_lettered": 2}
    assert dict(scrape.lag_buckets)[0.5] == 1 and dict(scrape.lag_buckets)[0.25] == 0


class FakeSqs:
    """GetQueueAttributes and a DLQ peek, counted; or AccessDenied for every call."""

    def __init__(self, denied: bool = False):
        self.denied = denied
        self.calls = 0

    def _call(self):
        self.calls += 1
        if self.denied:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "Op")

    def get_queue_attributes(self, QueueUrl, AttributeNames):  # noqa: N803 - boto3's names
        self._call()
        visible = 3 if QueueUrl.endswith("-dlq") else 0
        return {
            "Attributes": {
                "ApproximateNumberOfMessages": str(visible),
                "ApproximateNumberOfMessagesNotVisible": "1",
            }
        }

    def receive_message(self, **kwargs):
        self._call()
        assert kwargs["VisibilityTimeout"] == 0 and kwargs["MessageAttributeNames"] == ["All"]
        return {
            "Messages": [
                {
                    "Body": '{"email": "ada@example.com"}',
                    "MessageAttributes": {
                        "failure_reason": {"DataType": "String", "StringValue": "x" * 500},
                        "failed_at": {"DataType": "String", "StringValue": at},
                        "failure_stage": {"DataType": "String", "StringValue": "consumer"},
                    },
                }
                for at in ("2026-12-01T10:00:00+00:00", "2026-12-01T11:00:00+00:00")
            ]
        }


def queue_urls():
    return {
        d: {k: f"http://sqs/{d}-{k.replace('_', '-')}" for k in ("buffer_queue", "queue", "dlq")}
        for d in DESTINATIONS
    }


def collector(sqs, metrics=None, clock=None, fetch=None):
    return StatusCollector(
        lambda: sqs,
        queue_urls(),
        metrics or {},
        **({"fetch": fetch} if fetch else {}),
        **({"clock": clock} if clock else {}),
    )


def by_name(snapshot):
    return {d["name"]: d for d in snapshot["destinations"]}


def test_depths_and_failures_come_from_sqs_without_bodies():
    crm = by_name(collector(FakeSqs()).snapshot())["crm"]
    assert crm["queues"]["dlq"] == {"visible": 3, "in_flight": 1, "error": None}
    assert crm["queues"]["queue"] == {"visible": 0, "in_flight": 1, "error": None}
    items = crm["failures"]["items"]
    newest_first = ["2026-12-01T11", "2026-12-01T10"]
    assert [i["failed_at"][:13] for i in items] == newest_first
    assert len(items[0]["failure_reason"]) == 300
    assert "ada@example.com" not in repr(crm)


def test_an_unreachable_metrics_url_is_unknown_and_the_rest_still_shows():
    url = f"http://127.0.0.1:{free_port()}/metrics"  # nothing listens there
    crm = by_name(collector(FakeSqs(), {"crm": url}).snapshot())["crm"]
    assert crm["consumer"]["applied_total"] is None
    assert crm["consumer"]["error"] == "metrics unreachable (URLError)"
    assert crm["queues"]["dlq"]["visible"] == 3


def test_a_consumer_without_a_metrics_url_says_what_to_set():
    marketing = by_name(collector(FakeSqs(), {"crm": "http://x"}).snapshot())["marketing"]
    assert "DATASYNC_CONSUMER_METRICS_URLS" in marketing["consumer"]["error"]


def test_without_permission_the_page_says_which_policy_to_attach():
    crm = by_name(collector(FakeSqs(denied=True)).snapshot())["crm"]
    for part in (*crm["queues"].values(), crm["failures"]):
        assert "not permitted (AccessDenied)" in part["error"]
        assert "dashboard_policy_arn" in part["error"]
    assert crm["queues"]["dlq"]["visible"] is None


def test_a_missing_queue_url_names_its_setting():
    urls = queue_urls()
    urls["crm"]["dlq"] = None
    status = StatusCollector(lambda: FakeSqs(), urls, {}).snapshot()
    assert "DATASYNC_CRM_DLQ_URL" in by_name(status)["crm"]["queues"]["dlq"]["error"]


def test_viewers_share_one_gathering_per_second():
    sqs, clock = FakeSqs(), Clock()
    status = collector(sqs, clock=clock)
    status.snapshot()
    per_gathering = sqs.calls
    assert per_gathering == 4 * len(DESTINATIONS)  # 3 depths + 1 peek per destination
    status.snapshot()
    clock.now += 0.9
    status.snapshot()
    assert sqs.calls == per_gathering
    clock.now += 0.1
    status.snapshot()
    assert sqs.calls == 2 * per_gathering


def test_throughput_and_lag_are_measured_between_scrapes():
    clock = Clock(0)
    texts = {"now": metrics_text(10, [0.01] * 10)}
    status = collector(FakeSqs(), {"crm": "http://crm"}, clock, fetch=lambda url: texts["now"])
    first = by_name(status.snapshot())["crm"]["consumer"]
    assert first["applied_total"] == 10 and first["applied_per_second"] is None
    assert first["outcomes"] == {"applied": 10, "dead_lettered": 2}
    clock.now = 10
    # 20 more records in 10 s, 10 of them 0.3 s late: the window's lag, not the lifetime's.
    texts["now"] = metrics_text(30, [0.01] * 10 + [0.3] * 10)
    second = by_name(status.snapshot())["crm"]["consumer"]
    assert second["applied_total"] == 30 and second["applied_per_second"] == 2.0
    assert second["lag_p50_seconds"] == pytest.approx(0.25 + 0.25 * 0.5)
    clock.now = 20
    texts["now"] = metrics_text(3, [])  # the consumer restarted
    assert by_name(status.snapshot())["crm"]["consumer"]["applied_per_second"] is None


def test_the_intake_queue_and_its_dlq_are_gathered_when_configured():
    intake = {"queue": "http://sqs/intake", "dlq": "http://sqs/intake-dlq"}
    sqs = FakeSqs()
    status = StatusCollector(lambda: sqs, queue_urls(), {}, intake_urls=intake).snapshot()
    assert status["intake"] == {
        "queues": {
            "queue": {"visible": 0, "in_flight": 1, "error": None},
            "dlq": {"visible": 3, "in_flight": 1, "error": None},
        }
    }
    assert sqs.calls == 4 * len(DESTINATIONS) + 2
    assert collector(FakeSqs()).snapshot()["intake"] is None  # a stack without one


def test_a_missing_intake_dlq_url_names_its_setting():
    intake = {"queue": "http://sqs/intake", "dlq": None}
    status = StatusCollector(lambda: FakeSqs(), queue_urls(), {}, intake_urls=intake).snapshot()
    assert "DATASYNC_INTAKE_DLQ_URL" in status["intake"]["queues"]["dlq"]["error"]


class IntakeCollector(FakeCollector):
    def snapshot(self):
        queues = {"queue": {"visible": 7, "in_flight": 2, "error": None}}
        queues["dlq"] = {"visible": 1, "in_flight": 0, "error": None}
        return {**super().snapshot(), "intake": {"queues": queues}}


def test_the_page_shows_the_intake_before_the_destinations():
    app = make_app()
    app.extensions["datasync.dashboard"].collector = IntakeCollector()
    html = app.test_client().get("/dashboard", headers={"X-API-Key": API_KEY}).get_data(True)
    intake = html[html.index('id="intake"') : html.index('id="destination-')]
    assert '<dd data-queue="queue">7 <small>+2 in flight</small></dd>' in intake
    assert '<dd data-queue="dlq" class="alert">1 <small>+0 in flight</small></dd>' in intake
    assert 'id="intake"' not in make_app().test_client().get(
        "/dashboard", headers={"X-API-Key": API_KEY}
    ).get_data(True)
