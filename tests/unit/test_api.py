import io
import json
import os
import subprocess
import uuid

import pytest
from openapi_spec_validator import validate

from apps.api.app import create_app
from apps.api.auth import ApiKeys, client_network
from apps.api.headers import HSTS, SECURITY_HEADERS
from apps.api.ratelimit import FailedAuthentications, RateLimiter
from datasync.contract import UserCreated, UserDeleted, UserUpdated, event_to_json, parse_event
from datasync.core import exit_codes
from datasync.core.bus import CIRCUIT_OPEN, PublishError
from datasync.settings import MIN_API_KEY_LENGTH, ConfigError, Settings
from devstack.paths import ROOT, venv_bin
from tests.unit.conftest import API_KEY, OTHER_KEY

PROFILE = {"email": "ada@example.com", "name": "Ada", "marketing_opt_in": True, "country": "GB"}
USER_ID = "0b9f5f7e-1c2d-4e3f-9a8b-7c6d5e4f3a2b"


def assert_problem(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json(force=True)
    assert body["status"] == status and body["title"]
    assert body["correlation_id"] == response.headers["X-Correlation-ID"]
    return body


# -- happy paths ---------------------------------------------------------------------------
def test_create_publishes_user_created_and_answers_202(client, auth, publisher):
    response = client.post("/v1/users", json=PROFILE, headers=auth)
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "accepted"
    [event] = publisher.events
    assert isinstance(event, UserCreated)
    assert str(event.event_id) == body["event_id"] and str(event.user_id) == body["user_id"]
    assert event.data.country == "GB" and event.data.marketing_opt_in is True


def test_patch_publishes_only_the_sent_fields(client, auth, publisher):
    response = client.patch(
        f"/v1/users/{USER_ID}", json={"name": "Ada K", "country": None}, headers=auth
    )
    assert response.status_code == 202
    [event] = publisher.events
    assert isinstance(event, UserUpdated)
    assert event.data.changed() == {"name": "Ada K", "country": None}


def test_delete_publishes_user_deleted(client, auth, publisher):
    response = client.delete(f"/v1/users/{USER_ID}", headers=auth)
    assert response.status_code == 202 and response.get_json()["user_id"] == USER_ID
    assert isinstance(publisher.events[0], UserDeleted)


def test_x_api_key_header_works_too(client, publisher):
    response = client.delete(f"/v1/users/{USER_ID}", headers={"X-API-Key": API_KEY})
    assert response.status_code == 202


@pytest.mark.parametrize("key", [OTHER_KEY, API_KEY])
def test_every_configured_key_is_valid_at_once(client, key):
    """Rotation without downtime: the old and the new key both work while clients move."""
    response = client.delete(f"/v1/users/{USER_ID}", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 202


def test_the_same_key_in_both_headers_is_fine(client):
    headers = {"Authorization": f"Bearer {API_KEY}", "X-API-Key": API_KEY}
    assert client.delete(f"/v1/users/{USER_ID}", headers=headers).status_code == 202


def test_correlation_id_is_propagated_into_the_event(client, auth, publisher):
    response = client.post(
        "/v1/users", json=PROFILE, headers={**auth, "X-Correlation-ID": "trace-42"}
    )
    assert response.headers["X-Correlation-ID"] == "trace-42"
    assert publisher.events[0].correlation_id == "trace-42"


@pytest.mark.parametrize("offered", ["bad id\t!", "x" * 129, "", "a\u00e9"])
def test_an_unsafe_correlation_id_is_replaced_as_documented(client, auth, publisher, offered):
    response = client.post("/v1/users", json=PROFILE, headers={**auth, "X-Correlation-ID": offered})
    assert response.status_code == 202
    replaced = response.headers["X-Correlation-ID"]
    assert replaced != offered and len(replaced) == 32
    assert publisher.events[0].correlation_id == replaced


def test_idempotency_key_gives_the_same_ids_on_retry(client, auth, publisher):
    headers = {**auth, "Idempotency-Key": "order-123"}
    first = client.post("/v1/users", json=PROFILE, headers=headers).get_json()
    second = client.post("/v1/users", json=PROFILE, headers=headers).get_json()
    third = client.post(
        "/v1/users", json=PROFILE, headers={**auth, "Idempotency-Key": "order-124"}
    ).get_json()
    assert first == second
    assert third["event_id"] != first["event_id"] and third["user_id"] != first["user_id"]


def test_idempotency_keys_are_scoped_per_api_key(app, publisher):
    client = app.test_client()
    a = client.delete(
        f"/v1/users/{USER_ID}", headers={"X-API-Key": API_KEY, "Idempotency-Key": "k"}
    )
    b = client.delete(
        f"/v1/users/{USER_ID}", headers={"X-API-Key": OTHER_KEY, "Idempotency-Key": "k"}
    )
    assert a.get_json()["event_id"] != b.get_json()["event_id"]


def test_without_idempotency_key_every_request_is_a_new_event(client, auth):
    a = client.delete(f"/v1/users/{USER_ID}", headers=auth).get_json()
    b = client.delete(f"/v1/users/{USER_ID}", headers=auth).get_json()
    assert a["event_id"] != b["event_id"]


# -- errors --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"X-API-Key": "wrong"},
        {"Authorization": "Basic dTpw"},
        {"Authorization": ""},
        {"X-API-Key": ""},
        # a wrong credential is not rescued by a right one in the other header
        {"Authorization": "Bearer wrong", "X-API-Key": API_KEY},
        {"Authorization": "Basic dTpw", "X-API-Key": API_KEY},
        {"Authorization": f"Bearer {API_KEY}", "X-API-Key": "wrong"},
        {"Authorization": "Bearer", "X-API-Key": API_KEY},
        # two valid keys: which caller is it?
        {"Authorization": f"Bearer {API_KEY}", "X-API-Key": OTHER_KEY},
    ],
)
def test_missing_or_wrong_key_is_401(client, headers, publisher):
    response = client.post("/v1/users", json=PROFILE, headers=headers)
    body = assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert publisher.events == []
    assert "wrong" not in body["detail"] and API_KEY not in response.get_data(as_text=True)


@pytest.mark.parametrize("keys", [f"has space {API_KEY}", f"{API_KEY},", f"caf\u00e9{API_KEY}"])
def test_keys_that_cannot_be_sent_in_a_header_are_refused_at_start(publisher, keys):
    settings = Settings(DATASYNC_ENV="aws", DATASYNC_API_KEYS=f"{keys},{OTHER_KEY}")
    if keys == f"{API_KEY},":  # an empty entry is simply skipped
        create_app(settings, publisher=publisher)
        return
    with pytest.raises(ConfigError, match="DATASYNC_API_KEYS"):
        create_app(settings, publisher=publisher)


def test_a_key_over_its_rate_is_429_with_retry_after_and_others_are_not(app, publisher):
    clock = FakeClock()
    app.extensions["datasync"].rate_limiter = RateLimiter(rate=2, burst=2, clock=clock)
    client = app.test_client()
    url = f"/v1/users/{USER_ID}"
    statuses = [client.delete(url, headers={"X-API-Key": API_KEY}).status_code for _ in range(2)]
    limited = client.delete(url, headers={"X-API-Key": API_KEY})
    assert statuses == [202, 202]
    assert_problem(limited, 429)
    assert limited.headers["Retry-After"] == "1"  # half a second, rounded up to whole seconds
    assert len(publisher.events) == 2  # the limited request published nothing
    assert client.delete(url, headers={"X-API-Key": OTHER_KEY}).status_code == 202
    clock.now += 0.5
    assert client.delete(url, headers={"X-API-Key": API_KEY}).status_code == 202


def test_the_rate_limit_refills_at_its_rate_up_to_the_burst():
    clock = FakeClock()
    limiter = RateLimiter(rate=10, burst=3, clock=clock)
    assert [limiter.acquire("k") for _ in range(3)] == [0, 0, 0]
    assert limiter.acquire("k") == pytest.approx(0.1)
    clock.now += 60  # a long pause refills to the burst, not beyond
    assert [limiter.acquire("k") for _ in range(4)][-1] == pytest.approx(0.1)
    assert RateLimiter(rate=0, burst=1).acquire("k") == 0  # 0 turns it off


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def guarded_app(app, per_minute=3):
    """The app with a failed-authentication limit of its own clock."""
    clock = FakeClock()
    failures = FailedAuthentications(per_minute, clock=clock)
    app.extensions["datasync"].api_keys = ApiKeys([OTHER_KEY, API_KEY], failures)
    return app.test_client(), clock


def from_address(address, key=API_KEY, **headers):
    return {"headers": {"X-API-Key": key, **headers}, "environ_base": {"REMOTE_ADDR": address}}


def test_an_address_that_sent_too_many_wrong_keys_gets_429_even_with_a_right_one(app, publisher):
    client, clock = guarded_app(app, per_minute=3)
    url = f"/v1/users/{USER_ID}"
    wrong = [client.delete(url, **from_address("203.0.113.7", "guess")) for _ in range(3)]
    assert [r.status_code for r in wrong] == [401, 401, 401]
    throttled = client.delete(url, **from_address("203.0.113.7"))
    body = assert_problem(throttled, 429)
    assert throttled.headers["Retry-After"] == "20"  # 3 a minute: one more try every 20 s
    assert "address" in body["detail"] and publisher.events == []
    assert client.delete(url, **from_address("198.51.100.2")).status_code == 202  # others: fine
    clock.now += 20
    assert client.delete(url, **from_address("203.0.113.7")).status_code == 202


def test_right_keys_and_missing_keys_do_not_count_as_refused_ones(app):
    client, _ = guarded_app(app, per_minute=2)
    url = f"/v1/users/{USER_ID}"
    for _ in range(5):
        assert client.delete(url, **from_address("203.0.113.7")).status_code == 202
        no_key = client.delete(url, environ_base={"REMOTE_ADDR": "203.0.113.7"})
        assert no_key.status_code == 401
    assert client.delete(url, **from_address("203.0.113.7", "guess")).status_code == 401


def test_a_wrong_key_sent_beside_a_right_one_counts_as_a_refused_key(app):
    """Holding one valid key must not let a guesser try others for free: the wrong key in the
    other header is refused and counted, whatever the valid one beside it."""
    client, _ = guarded_app(app, per_minute=2)
    url = f"/v1/users/{USER_ID}"
    beside = from_address("203.0.113.7", API_KEY, Authorization="Bearer guess")
    assert [client.delete(url, **beside).status_code for _ in range(2)] == [401, 401]
    assert_problem(client.delete(url, **from_address("203.0.113.7")), 429)


def test_failed_authentications_regain_at_their_rate_up_to_the_burst_and_stay_bounded():
    clock = FakeClock()
    failures = FailedAuthentications(per_minute=6, max_addresses=2, clock=clock)
    for _ in range(6):
        assert failures.retry_after("a") == 0
        failures.record_failure("a")
    assert failures.retry_after("a") == pytest.approx(10)  # 6 a minute: one per 10 s
    clock.now += 5
    assert failures.retry_after("a") == pytest.approx(5)
    clock.now += 3600  # a long pause gives back the burst, not more
    for _ in range(6):
        failures.record_failure("a")
    assert failures.retry_after("a") == pytest.approx(10)
    failures.record_failure("b")
    failures.record_failure("c")  # a third address: the one that failed longest ago goes
    assert failures.retry_after("a") == 0
    assert FailedAuthentications(per_minute=0).retry_after("a") == 0  # 0 turns it off


@pytest.mark.parametrize(("trusted", "separate"), [(1, True), (0, False)])
def test_behind_trusted_proxies_the_forwarded_client_is_the_address(publisher, trusted, separate):
    settings = Settings(
        DATASYNC_ENV="aws",
        DATASYNC_API_KEYS=API_KEY,
        DATASYNC_API_AUTH_FAILURES_PER_MINUTE="1",
        DATASYNC_API_TRUSTED_PROXIES=str(trusted),
    )
    client = create_app(settings, publisher=publisher).test_client()
    url = f"/v1/users/{USER_ID}"
    proxy = "10.0.0.5"  # both clients come through the same proxy
    first = from_address(proxy, "guess", **{"X-Forwarded-For": "203.0.113.7"})
    assert client.delete(url, **first).status_code == 401
    second = from_address(proxy, **{"X-Forwarded-For": "198.51.100.2"})
    # Trusted, the proxy's X-Forwarded-For names two clients; untrusted, a client could
    # rotate that header to escape the limit, so the peer (the proxy) is the address.
    assert client.delete(url, **second).status_code == (202 if separate else 429)


def test_an_ipv6_client_is_limited_per_64_and_cannot_rotate_its_host_bits(app, publisher):
    client, _ = guarded_app(app, per_minute=2)
    url = f"/v1/users/{USER_ID}"
    for host in ("2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe"):  # one /64
        assert client.delete(url, **from_address(host, "guess")).status_code == 401
    rotated = from_address("2001:db8:1:2:dead:beef:0:1")  # a third host of that /64, right key
    assert_problem(client.delete(url, **rotated), 429)
    assert client.delete(url, **from_address("2001:db8:1:3::1")).status_code == 202  # next /64
    assert client.delete(url, **from_address("::ffff:203.0.113.9", "guess")).status_code == 401


@pytest.mark.parametrize(
    ("address", "counted_as"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::9", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),  # IPv4-mapped: the IPv4 client
        ("not-an-address", "not-an-address"),
    ],
)
def test_refused_keys_are_counted_per_ipv4_address_or_ipv6_64(address, counted_as):
    assert client_network(address) == counted_as


@pytest.mark.parametrize(
    ("trusted", "url", "headers", "hsts"),
    [
        (0, "https://api.example/", {}, True),  # TLS to this server
        (0, "http://api.example/", {}, False),
        (0, "http://api.example/", {"X-Forwarded-Proto": "https"}, False),  # anyone can write it
        (1, "http://api.example/", {"X-Forwarded-Proto": "https"}, True),  # the trusted proxy's
        (1, "http://api.example/", {"X-Forwarded-Proto": "http"}, False),
        (1, "http://api.example/", {}, False),
        # a CDN (reached over TLS) in front of a balancer (reached by the CDN over http): the
        # client's scheme is the one the outer of the two trusted proxies names
        (2, "http://api.example/", {"X-Forwarded-Proto": "https, http"}, True),
    ],
)
def test_hsts_only_when_the_request_came_over_tls(publisher, trusted, url, headers, hsts):
    settings = Settings(
        DATASYNC_ENV="aws", DATASYNC_API_KEYS=API_KEY, DATASYNC_API_TRUSTED_PROXIES=str(trusted)
    )
    client = create_app(settings, publisher=publisher).test_client()
    for path in ("/healthz", "/nothing"):  # an answer and an error alike
        response = client.get(path, base_url=url, headers=headers)
        assert response.headers.get("Strict-Transport-Security") == (HSTS if hsts else None)
    if hsts:
        assert "max-age=31536000" in HSTS


def test_invalid_body_is_422_with_field_errors_and_no_echo_of_input(client, auth):
    response = client.post(
        "/v1/users", json={"email": "secret-not-an-email", "name": ""}, headers=auth
    )
    body = assert_problem(response, 422)
    fields = {e["field"] for e in body["errors"]}
    assert fields == {"body.email", "body.name"}
    assert "secret-not-an-email" not in response.get_data(as_text=True)


def test_unknown_field_is_422(client, auth):
    body = assert_problem(
        client.post("/v1/users", json={**PROFILE, "role": "admin"}, headers=auth), 422
    )
    assert body["errors"][0]["field"] == "body.role"


def test_patch_with_nothing_to_change_is_422(client, auth):
    assert_problem(client.patch(f"/v1/users/{USER_ID}", json={}, headers=auth), 422)


@pytest.mark.parametrize("field", ["email", "name", "marketing_opt_in"])
def test_patch_setting_a_required_field_to_null_is_422_on_that_field(client, auth, field):
    response = client.patch(f"/v1/users/{USER_ID}", json={field: None}, headers=auth)
    body = assert_problem(response, 422)
    assert [e["field"] for e in body["errors"]] == [f"body.{field}"]


@pytest.mark.parametrize(
    "user_id",
    [
        "not-a-uuid",
        "0b9f5f7e1c2d4e3f9a8b7c6d5e4f3a2b",  # uuid.UUID() would take these three
        "{0b9f5f7e-1c2d-4e3f-9a8b-7c6d5e4f3a2b}",
        "urn:uuid:0b9f5f7e-1c2d-4e3f-9a8b-7c6d5e4f3a2b",
    ],
)
def test_non_uuid_user_id_is_422(client, auth, user_id):
    body = assert_problem(client.delete(f"/v1/users/{user_id}", headers=auth), 422)
    assert body["errors"][0]["field"] == "path.user_id"


@pytest.mark.parametrize("payload", ["{", '{"email": ', "\xff", "[1,"])
def test_malformed_json_is_400(client, auth, payload):
    response = client.post(
        "/v1/users",
        data=payload.encode("latin-1"),
        headers={**auth, "Content-Type": "application/json"},
    )
    assert_problem(response, 400)


@pytest.mark.parametrize("payload", ["[]", "42", "null", '"text"'])
def test_json_that_is_not_an_object_is_422(client, auth, payload):
    response = client.post(
        "/v1/users", data=payload, headers={**auth, "Content-Type": "application/json"}
    )
    assert_problem(response, 422)


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/problem+json"],
)
def test_not_json_is_415(client, auth, content_type):
    headers = {**auth, **({"Content-Type": content_type} if content_type else {})}
    assert_problem(client.post("/v1/users", data=json.dumps(PROFILE), headers=headers), 415)


def test_body_over_64_kib_is_413(client, auth):
    big = {**PROFILE, "name": "x" * (65 * 1024)}
    assert_problem(client.post("/v1/users", json=big, headers=auth), 413)


def test_a_body_without_content_length_is_411(client, auth, publisher):
    response = client.post(
        "/v1/users",
        data=json.dumps(PROFILE),
        headers={**auth, "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
    )
    assert_problem(response, 411)
    assert publisher.events == []


class StalledBody(io.RawIOBase):
    """A 100-byte request body that never arrives: the server's socket read times out."""

    def __init__(self, error=TimeoutError):
        self.position = 0
        self.error = error

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=0):
        self.position = 100 if whence == 2 else offset
        return self.position

    def tell(self):
        return self.position

    def readinto(self, buffer):
        if self.error is None:
            return 0  # the client went away
        raise self.error("timed out")


@pytest.mark.parametrize("error, status", [(TimeoutError, 408), (None, 400)])
def test_a_body_that_does_not_arrive_in_time_is_408_one_cut_short_400(
    client, auth, publisher, error, status
):
    response = client.post(
        "/v1/users",
        input_stream=StalledBody(error),
        headers={**auth, "Content-Type": "application/json"},
    )
    assert_problem(response, status)
    assert publisher.events == []


def test_unknown_route_is_404(client):
    assert_problem(client.get("/v2/nothing"), 404)


@pytest.mark.parametrize("method", ["put", "options"])
def test_wrong_method_is_405_with_allow(client, auth, method):
    response = getattr(client, method)(f"/v1/users/{USER_ID}", json=PROFILE, headers=auth)
    assert_problem(response, 405)
    assert set(response.headers["Allow"].split(", ")) == {"PATCH", "DELETE"}


@pytest.mark.parametrize("key", ["x" * 256, "", "with space", "caf\u00e9", "tab\tkey"])
@pytest.mark.parametrize(
    "path, body", [("/v1/users", PROFILE), ("/v1/users:batch", {"users": [PROFILE, {}]})]
)
def test_bad_idempotency_key_is_400(client, auth, key, publisher, path, body):
    response = client.post(path, json=body, headers={**auth, "Idempotency-Key": key})
    assert_problem(response, 400)
    assert publisher.events == []


def test_a_bad_idempotency_key_is_400_even_when_no_user_of_the_batch_is_valid(client, auth):
    response = batch(client, auth, [{}], **{"Idempotency-Key": "with space"})
    assert_problem(response, 400)


def test_the_longest_idempotency_key_is_fine(client, auth):
    headers = {**auth, "Idempotency-Key": "~" * 255}
    assert client.post("/v1/users", json=PROFILE, headers=headers).status_code == 202


@pytest.mark.parametrize(
    "refusal, retry_after",
    [
        (PublishError("bus unavailable after 2 attempts: InternalFailure"), "1"),
        (PublishError("circuit open", code=CIRCUIT_OPEN, retry_after=3.2), "4"),
        (PublishError("bus refused the event: AccessDenied", retryable=False), "1"),
    ],
)
def test_bus_refusal_is_503_with_retry_after_and_no_202(
    client, auth, publisher, refusal, retry_after
):
    publisher.refusal = refusal
    response = client.post("/v1/users", json=PROFILE, headers=auth)
    body = assert_problem(response, 503)
    assert response.headers["Retry-After"] == retry_after
    assert "Idempotency-Key" in body["detail"]


def test_unexpected_error_is_a_problem_not_a_stack_trace(app, auth, publisher, monkeypatch):
    def broken(event):
        raise RuntimeError("boom with secret detail")

    monkeypatch.setattr(publisher, "publish", broken)
    response = app.test_client().post("/v1/users", json=PROFILE, headers=auth)
    assert_problem(response, 500)
    assert "secret detail" not in response.get_data(as_text=True)


# -- health, readiness, OpenAPI, configuration ----------------------------------------------
def test_healthz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_healthz_answers_while_the_bus_is_down(client, publisher):
    publisher.reachable, publisher.circuit = False, "open"
    assert client.get("/healthz").status_code == 200
    assert publisher.probes == 0  # never touches the bus


def test_readyz_follows_the_bus_and_caches_the_probe(app, publisher):
    clock = FakeClock()
    readiness = app.extensions["datasync"].readiness
    readiness.clock = clock
    client = app.test_client()
    publisher.reachable = False
    assert client.get("/readyz").get_json() == {
        "status": "unavailable",
        "reason": "event bus not reachable",
    }
    publisher.reachable = True
    assert client.get("/readyz").status_code == 503  # cached
    assert publisher.probes == 1
    clock.now += readiness.cache_seconds + 0.1
    assert client.get("/readyz").status_code == 200
    assert publisher.probes == 2


def test_readyz_is_not_ready_while_the_circuit_is_open_without_probing(client, publisher):
    publisher.circuit = "open"
    response = client.get("/readyz")
    assert response.status_code == 503 and "circuit" in response.get_json()["reason"]
    assert publisher.probes == 0
    publisher.circuit = "half_open"  # the cool-down is over: readiness probes the bus again
    assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("post", "/v1/users", 202),
        ("post", "/v1/users", 401),
        ("get", "/healthz", 200),
        ("get", "/readyz", 200),
        ("get", "/openapi.json", 200),
        ("get", "/nothing", 404),
        ("put", "/v1/users", 405),
    ],
)
def test_every_response_carries_the_security_headers(client, auth, method, path, status):
    headers = auth if status != 401 else {}
    response = getattr(client, method)(path, json=PROFILE, headers=headers)
    assert response.status_code == status
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_openapi_is_valid_and_generated_from_the_models(client):
    spec = client.get("/openapi.json").get_json()
    validate(spec)
    schemas = spec["components"]["schemas"]
    assert set(schemas["UserProfile"]["required"]) == {"email", "name"}
    assert schemas["UserProfile"]["properties"]["name"]["maxLength"] == 200
    assert {"post"} <= set(spec["paths"]["/v1/users"]) and {"patch", "delete"} <= set(
        spec["paths"]["/v1/users/{user_id}"]
    )
    batch_users = schemas["UserBatch"]["properties"]["users"]
    assert (batch_users["minItems"], batch_users["maxItems"]) == (1, 100)
    assert set(spec["paths"]["/v1/users:batch"]["post"]["responses"]) >= {"202", "422", "429"}


def test_refuses_to_start_without_keys_outside_local_mode(publisher):
    with pytest.raises(ConfigError, match="DATASYNC_API_KEYS"):
        create_app(Settings(DATASYNC_ENV="aws", DATASYNC_API_KEYS=""), publisher=publisher)


@pytest.mark.parametrize(
    "keys", ["", "0123456789abcdefghijklmnopqrstu", f"{API_KEY},x", f"{API_KEY}, tiny key"]
)
def test_the_server_refuses_missing_or_short_keys_outside_local_mode_with_exit_5(keys):
    """Checked by gunicorn's master before any worker starts: exit 5, why, and how to make a
    key; never the key itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATASYNC_", "AWS_"))}
    env.update(DATASYNC_ENV="aws", DATASYNC_API_KEYS=keys, DATASYNC_ENV_FILE=os.devnull)
    server = subprocess.run(  # noqa: S603 - our own server
        [venv_bin("gunicorn"), "--config", "python:apps.api.gunicorn_conf", "apps.api.wsgi:app"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert server.returncode == exit_codes.CONFIG, server.stderr
    assert "DATASYNC_API_KEYS" in server.stderr
    assert "python -c 'import secrets; print(secrets.token_urlsafe(32))'" in server.stderr
    assert "Traceback" not in server.stderr
    for key in filter(None, keys.split(",")):
        assert key.strip() not in server.stderr, "the message quotes a key"


@pytest.mark.parametrize("length", [31, 32])
def test_outside_local_mode_a_key_has_at_least_32_characters(publisher, length):
    settings = Settings(DATASYNC_ENV="aws", DATASYNC_API_KEYS=f"{API_KEY},{'k' * length}")
    if length < MIN_API_KEY_LENGTH:
        with pytest.raises(ConfigError, match=r"key 2 is \(of 2\) shorter than 32 characters"):
            create_app(settings, publisher=publisher)
    else:
        assert create_app(settings, publisher=publisher)
    short = Settings(DATASYNC_ENV="local", DATASYNC_API_KEYS="short-local-key")
    assert short.api_key_list() == ["short-local-key"]  # local mode: any key


def test_local_mode_uses_the_development_key(publisher):
    app = create_app(Settings(DATASYNC_ENV="local", DATASYNC_API_KEYS=""), publisher=publisher)
    response = app.test_client().delete(
        f"/v1/users/{uuid.uuid4()}", headers={"X-API-Key": "local-dev-key"}
    )
    assert response.status_code == 202


def test_request_logs_carry_ids_but_no_personal_data(client, auth, caplog):
    caplog.set_level("INFO")
    client.post("/v1/users", json=PROFILE, headers={**auth, "X-Correlation-ID": "trace-log"})
    records = [r for r in caplog.records if r.getMessage() == "request"]
    assert records and records[0].correlation_id == "trace-log" and records[0].status == 202
    assert "ada@example.com" not in caplog.text and "Ada" not in caplog.text


# -- the events the API builds --------------------------------------------------------------
@pytest.mark.parametrize(
    "method, path, body",
    [
        ("post", "/v1/users", {**PROFILE, "attributes": {"plan": "pro"}}),
        ("post", "/v1/users", {"email": "ada@example.com", "name": "Ada"}),
        ("patch", f"/v1/users/{USER_ID}", {"name": "Ada K", "country": None}),
        ("patch", f"/v1/users/{USER_ID}", {"marketing_opt_in": True, **PROFILE}),
        ("delete", f"/v1/users/{USER_ID}", None),
    ],
)
def test_the_published_event_is_what_validating_it_again_gives(
    client, auth, publisher, method, path, body
):
    """The API builds events from the validated body without validating them again: they
    must be exactly the events the contract's own validation makes of them."""
    if body and "marketing_opt_in" in body and method == "patch":
        body = {k: body[k] for k in ("marketing_opt_in", "email", "name")}
    response = getattr(client, method)(path, json=body, headers=auth)
    assert response.status_code == 202, response.get_data(as_text=True)
    [built] = publisher.events
    revalidated = parse_event(event_to_json(built))
    assert revalidated == built
    assert event_to_json(revalidated) == event_to_json(built)
    assert revalidated.data.model_fields_set == built.data.model_fields_set


# -- POST /v1/users:batch ---------------------------------------------------------------------
def batch(client, auth, users, **headers):
    return client.post("/v1/users:batch", json={"users": users}, headers={**auth, **headers})


def test_a_batch_publishes_each_user_and_answers_each_in_order(client, auth, publisher):
    users = [{**PROFILE, "email": f"u{i}@example.com"} for i in range(3)]
    response = batch(client, auth, users)
    assert response.status_code == 202
    body = response.get_json()
    assert body["accepted"] == 3 and body["refused"] == 0
    assert [r["index"] for r in body["results"]] == [0, 1, 2]
    assert [str(e.event_id) for e in publisher.events] == [r["event_id"] for r in body["results"]]
    assert [e.data.email for e in publisher.events] == [u["email"] for u in users]
    assert all(isinstance(e, UserCreated) for e in publisher.events)
    assert "Retry-After" not in response.headers


def test_an_invalid_user_is_refused_alone(client, auth, publisher):
    users = [PROFILE, {"email": "secret-not-an-email", "name": "B"}, {}, {**PROFILE, "name": "C"}]
    body = batch(client, auth, users).get_json()
    assert [r["status"] for r in body["results"]] == [202, 422, 422, 202]
    assert body["accepted"] == 2 and body["refused"] == 2
    problem = body["results"][1]["problem"]
    assert problem["status"] == 422 and [e["field"] for e in problem["errors"]] == [
        "body.users.1.email"
    ]
    assert "secret-not-an-email" not in json.dumps(body)
    assert [e.data.name for e in publisher.events] == ["Ada", "C"]


def test_a_user_the_bus_refused_is_503_in_its_result_with_retry_after(client, auth, publisher):
    publisher.refuse_if = lambda event: event.data.name == "B"
    users = [PROFILE, {**PROFILE, "name": "B"}]
    response = batch(client, auth, users)
    assert response.status_code == 202
    results = response.get_json()["results"]
    assert [r["status"] for r in results] == [202, 503]
    assert "Idempotency-Key" in results[1]["problem"]["detail"]
    assert response.headers["Retry-After"] == "3"  # the refusal's 2.5 s, rounded up


def test_a_batch_with_the_same_idempotency_key_gets_the_same_ids_per_position(client, auth):
    users = [PROFILE, {**PROFILE, "name": "B"}]
    first = batch(client, auth, users, **{"Idempotency-Key": "import-7"}).get_json()["results"]
    again = batch(client, auth, users, **{"Idempotency-Key": "import-7"}).get_json()["results"]
    other = batch(client, auth, users, **{"Idempotency-Key": "import-8"}).get_json()["results"]
    assert first == again
    ids = {r[k] for r in first for k in ("user_id", "event_id")}
    assert len(ids) == 4  # every position and purpose has ids of its own
    assert not ids & {r[k] for r in other for k in ("user_id", "event_id")}
    single = client.post("/v1/users", json=PROFILE, headers={**auth, "Idempotency-Key": "import-7"})
    assert single.get_json()["event_id"] not in ids  # a batch's key is not a single request's


@pytest.mark.parametrize(
    "payload, status",
    [
        ({"users": []}, 422),
        ({"users": [PROFILE] * 101}, 422),
        ({"users": PROFILE}, 422),
        ({}, 422),
        ({"users": [PROFILE], "extra": 1}, 422),
        ({"users": [PROFILE, None]}, 422),  # every user is an object at least
        ({"users": [42]}, 422),
        ([PROFILE], 422),
    ],
)
def test_a_batch_that_is_not_1_to_100_users_is_refused_whole(
    client, auth, publisher, payload, status
):
    response = client.post("/v1/users:batch", json=payload, headers=auth)
    assert_problem(response, status)
    assert publisher.events == []


def test_a_batch_may_be_larger_than_a_single_request_but_not_over_1_mib(client, auth, publisher):
    attributes = {f"k{i}": "v" * 256 for i in range(20)}
    users = [{**PROFILE, "attributes": attributes}] * 100  # ~560 KB
    assert batch(client, auth, users).status_code == 202
    assert len(publisher.events) == 100
    huge = [{**PROFILE, "name": "x" * 200, "attributes": attributes}] * 100
    body = json.dumps({"users": huge * 2})
    response = client.post(
        "/v1/users:batch", data=body, headers={**auth, "Content-Type": "application/json"}
    )
    assert "1024 KiB" in assert_problem(response, 413)["detail"]


def test_a_batch_counts_one_request_per_user_against_the_rate_limit(app, publisher):
    clock = FakeClock()
    app.extensions["datasync"].rate_limiter = RateLimiter(rate=10, burst=5, clock=clock)
    client = app.test_client()
    headers = {"X-API-Key": API_KEY}
    assert batch(client, headers, [PROFILE] * 4).status_code == 202
    limited = batch(client, headers, [PROFILE] * 2)  # 1 token left (taken), 2 needed
    assert_problem(limited, 429)
    assert limited.headers["Retry-After"] == "1"
    assert len(publisher.events) == 4
    clock.now += 0.2
    assert batch(client, headers, [PROFILE] * 2).status_code == 202


def test_a_batch_is_logged_as_one_line_with_its_counts(client, auth, publisher, caplog):
    caplog.set_level("INFO")
    batch(client, auth, [PROFILE, {"email": "x"}])
    [record] = [r for r in caplog.records if r.getMessage() == "request"]
    assert record.route == "/v1/users:batch" and record.accepted == 1 and record.refused == 1
    assert "ada@example.com" not in caplog.text


def test_the_rate_limiter_takes_a_cost_but_never_more_than_the_burst():
    clock = FakeClock()
    limiter = RateLimiter(rate=10, burst=3, clock=clock)
    assert limiter.acquire("k", 2) == 0
    assert limiter.acquire("k", 2) == pytest.approx(0.1)  # one token there, two needed
    clock.now += 60
    assert limiter.acquire("k", 500) == 0  # a cost over the burst takes the whole burst
    assert limiter.acquire("k") == pytest.approx(0.1)
