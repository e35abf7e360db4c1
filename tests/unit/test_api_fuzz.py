"""No input may produce a 500: arbitrary bodies, headers and paths end in a 2xx or 4xx."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.conftest import API_KEY, OTHER_KEY

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=20,
)
profile_like = st.fixed_dictionaries(
    {},
    optional={
        "email": st.one_of(st.emails(), st.text(max_size=40), st.none()),
        "name": st.one_of(st.text(max_size=250), st.integers()),
        "marketing_opt_in": st.one_of(st.booleans(), st.text(max_size=5)),
        "country": st.one_of(st.text(max_size=4), st.none()),
        "attributes": json_values,
    },
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=st.sampled_from(["POST", "PATCH", "DELETE", "PUT", "GET"]),
    path=st.sampled_from(
        [
            "/v1/users",
            "/v1/users/0b9f5f7e-1c2d-4e3f-9a8b-7c6d5e4f3a2b",
            "/v1/users/x",
            "/v1/users/%00",
            "/v1/users:batch",
        ]
    ),
    body=st.one_of(
        profile_like,
        json_values,
        st.fixed_dictionaries(
            {"users": st.lists(st.one_of(profile_like, json_values), max_size=4)}
        ),
    ),
    raw=st.one_of(st.none(), st.binary(max_size=200)),
    content_type=st.sampled_from(
        ["application/json", "application/problem+json", "text/plain", None]
    ),
    idem=st.one_of(st.none(), st.text(max_size=300)),
    credentials=st.dictionaries(
        st.sampled_from(["Authorization", "X-API-Key", "X-Correlation-ID"]),
        st.one_of(st.text(max_size=40), st.just(f"Bearer {API_KEY}"), st.just(OTHER_KEY)),
        max_size=3,
    ),
)
def test_no_input_produces_a_server_error(
    client, auth, method, path, body, raw, content_type, idem, credentials
):
    headers = dict(auth)
    if content_type:
        headers["Content-Type"] = content_type
    if idem is not None:
        headers["Idempotency-Key"] = idem.encode("utf-8", "ignore").decode("latin-1", "ignore")
    for name, value in credentials.items():
        headers[name] = value.encode("utf-8", "ignore").decode("latin-1", "ignore")
    data = raw if raw is not None else json.dumps(body)
    try:
        response = client.open(path, method=method, data=data, headers=headers)
    except ValueError:  # the test client itself refuses some header values
        return
    assert response.status_code < 500, response.get_data(as_text=True)
