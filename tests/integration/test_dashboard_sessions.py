"""The status page's browser sessions on the real stack: the sessions table Terraform created
in the emulator, shared by two API servers (the stack's, and one of two gunicorn workers) as by
the workers and pods of a deployment.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request

import boto3
import pytest

from apps.api.dashboard import COOKIE
from apps.api.sessions import token_hash
from tests.api_probes import Answer, api_server, call

pytestmark = pytest.mark.integration


def post_form(url: str, path: str, form: dict[str, str], headers: dict[str, str]) -> Answer:
    """A form's POST, as curl sends it (no redirect followed)."""
    request = urllib.request.Request(  # noqa: S310 - loopback
        url + path,
        data=urllib.parse.urlencode(form).encode(),
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded", **headers},
    )
    opener = urllib.request.build_opener(NoRedirect())
    try:
        with opener.open(request, timeout=15) as response:
            status, answer, body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, answer, body = error.code, error.headers, error.read()
    return Answer(status, {k.lower(): v for k, v in answer.items()}, body, 0.0)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def with_cookie(value: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={value}"}


def test_a_logout_ends_the_session_on_every_api_server_sharing_the_table(pipeline, tmp_path):
    env = pipeline.env
    table = env["DATASYNC_DASHBOARD_SESSIONS_TABLE"]
    with api_server(env, tmp_path / "api-second.log", GUNICORN_WORKERS="2") as second:
        login = post_form(pipeline.api_url, "/dashboard/login", {"api_key": pipeline.api_key}, {})
        assert login.status == 303, login.body[:300]
        cookie = re.match(rf"{COOKIE}=([^;]+);", login.headers["set-cookie"]).group(1)
        assert pipeline.api_key not in cookie
        for url in (pipeline.api_url, second):  # any server, any worker
            for _ in range(3):
                assert (
                    call(url, "GET", "/dashboard/data", headers=with_cookie(cookie)).status == 200
                )

        # What the table holds: the token's hash, the key's fingerprint, the expiry; no token.
        dynamodb = boto3.client(
            "dynamodb", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"],
            aws_access_key_id="test", aws_secret_access_key="test",  # noqa: S106 - the emulator
        )  # fmt: skip
        item = dynamodb.get_item(TableName=table, Key={"session": {"S": token_hash(cookie)}})
        assert set(item["Item"]) == {"session", "fingerprint", "expires_at"}
        assert cookie not in str(item["Item"])

        logout = post_form(second, "/dashboard/logout", {}, with_cookie(cookie))
        assert logout.status == 303
        assert "Item" not in dynamodb.get_item(
            TableName=table, Key={"session": {"S": token_hash(cookie)}}
        )
        for url in (pipeline.api_url, second):  # a copy of the cookie kept from before
            for _ in range(3):
                assert (
                    call(url, "GET", "/dashboard/data", headers=with_cookie(cookie)).status == 401
                )


@pytest.mark.parametrize("cookie", ["é" * 43, "a" * 42, "+/" * 21 + "=", "%ff" * 20, "a.b.c"])
def test_a_malformed_cookie_is_a_401_on_the_real_server(pipeline, cookie):
    header = f"{COOKIE}={cookie}".encode().decode("latin-1")  # the bytes a client would send
    answer = call(pipeline.api_url, "GET", "/dashboard/data", headers={"Cookie": header})
    assert answer.status == 401
    page = call(pipeline.api_url, "GET", "/dashboard", headers={"Cookie": header})
    assert page.status == 401 and b'name="api_key"' in page.body
