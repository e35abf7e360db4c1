import json
import uuid

import pytest
from openapi_spec_validator import validate

from apps.api.app import create_app
from datasync.contract import UserCreated, UserDeleted, UserUpdated
from datasync.settings import ConfigError, Settings

PROFILE = {"email": "ada@example.com", "name": "Ada", "marketing_opt_in": True, "country": "gb"}
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
    response = client.delete(f"/v1/users/{USER_ID}", headers={"X-API-Key": "unit-test-key"})
    assert response.status_code == 202


def test_correlation_id_is_propagated_into_the_event(client, auth, publisher):
    response = client.post(
        "/v1/users", json=PROFILE, headers={**auth, "X-Correlation-ID": "trace-42"}
    )
    assert response.headers["X-Correlation-ID"] == "trace-42"
    assert publisher.events[0].correlation_id == "trace-42"


def test_an_unsafe_correlation_id_is_replaced(client, auth, publisher):
    response = client.post(
        "/v1/users", json=PROFILE, headers={**auth, "X-Correlation-ID": "bad id\t!"}
    )
    assert response.headers["X-Correlation-ID"] != "bad id\t!"
    assert publisher.events[0].correlation_id == response.headers["X-Correlation-ID"]


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
        f"/v1/users/{USER_ID}", headers={"X-API-Key": "unit-test-key", "Idempotency-Key": "k"}
    )
    b = client.delete(
        f"/v1/users/{USER_ID}", headers={"X-API-Key": "other-key", "Idempotency-Key": "k"}
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
    ],
)
def test_missing_or_wrong_key_is_401(client, headers, publisher):
    response = client.post("/v1/users", json=PROFILE, headers=headers)
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert publisher.events == []


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


def test_non_uuid_user_id_is_422(client, auth):
    body = assert_problem(client.delete("/v1/users/not-a-uuid", headers=auth), 422)
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


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_not_json_is_415(client, auth, content_type):
    headers = {**auth, **({"Content-Type": content_type} if content_type else {})}
    assert_problem(client.post("/v1/users", data=json.dumps(PROFILE), headers=headers), 415)


def test_body_over_64_kib_is_413(client, auth):
    big = {**PROFILE, "name": "x" * (65 * 1024)}
    assert_problem(client.post("/v1/users", json=big, headers=auth), 413)


def test_unknown_route_is_404(client):
    assert_problem(client.get("/v2/nothing"), 404)


def test_wrong_method_is_405_with_allow(client, auth):
    response = client.put(f"/v1/users/{USER_ID}", json=PROFILE, headers=auth)
    assert_problem(response, 405)
    assert "PATCH" in response.headers["Allow"]


def test_bad_idempotency_key_is_400(client, auth):
    assert_problem(
        client.post("/v1/users", json=PROFILE, headers={**auth, "Idempotency-Key": "x" * 300}), 400
    )


def test_bus_refusal_is_503_with_retry_after_and_no_202(client, auth, publisher):
    publisher.refuse = True
    response = client.post("/v1/users", json=PROFILE, headers=auth)
    body = assert_problem(response, 503)
    assert int(response.headers["Retry-After"]) > 0
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


def test_readyz_follows_the_bus(app, publisher):
    publisher.reachable = False
    assert app.test_client().get("/readyz").status_code == 503
    publisher.reachable = True
    app.extensions["datasync"].ready_checked_at = float("-inf")  # skip the cache
    assert app.test_client().get("/readyz").status_code == 200


def test_openapi_is_valid_and_generated_from_the_models(client):
    spec = client.get("/openapi.json").get_json()
    validate(spec)
    schemas = spec["components"]["schemas"]
    assert set(schemas["UserProfile"]["required"]) == {"email", "name"}
    assert schemas["UserProfile"]["properties"]["name"]["maxLength"] == 200
    assert {"post"} <= set(spec["paths"]["/v1/users"]) and {"patch", "delete"} <= set(
        spec["paths"]["/v1/users/{user_id}"]
    )


def test_refuses_to_start_without_keys_outside_local_mode(publisher):
    with pytest.raises(ConfigError, match="DATASYNC_API_KEYS"):
        create_app(Settings(DATASYNC_ENV="aws", DATASYNC_API_KEYS=""), publisher=publisher)


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
