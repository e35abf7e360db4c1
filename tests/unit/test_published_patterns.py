"""What the OpenAPI document says is valid is what the API accepts, case by case.

schemathesis checks this against the running server (tests/integration); these are the edge
cases that made the document and the validators disagree before, checked in milliseconds with
a JSON Schema validator on one side and the API's models on the other.
"""

from __future__ import annotations

import re

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from apps.api.openapi import build_openapi
from apps.api.routes import IDEMPOTENCY_KEY_PATTERN
from datasync.contract import UserChanges, UserProfile

DOCUMENT = build_openapi()


def published(model: str) -> Draft202012Validator:
    schema = {"$ref": f"#/components/schemas/{model}", "components": DOCUMENT["components"]}
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def accepted(model, body) -> bool:
    try:
        model.model_validate(body)
    except ValidationError:
        return False
    return True


BASE = {"email": "ada@example.com", "name": "Ada"}
PROFILES = [
    BASE,
    {**BASE, "name": " Ada"},  # was stripped, then counted
    {**BASE, "name": "Ada "},
    {**BASE, "name": " "},
    {**BASE, "name": "x" * 200},
    {**BASE, "name": "x" * 200 + " "},  # 201 characters that were 200 after stripping
    {**BASE, "name": "A\u0000da"},
    {**BASE, "name": "A\u202eda"},
    {**BASE, "name": "A\u2028da"},
    {**BASE, "name": "Zoë Ångström-李"},
    {**BASE, "email": "ada@exаmple.com"},  # Cyrillic а
    {**BASE, "email": "Ada <ada@example.com>"},
    {**BASE, "email": "ada@host.test"},
    {**BASE, "email": "ada@LOCALHOST"},
    {**BASE, "email": "ada@b"},
    {**BASE, "email": "ada@xn--bcher-kva.example"},
    {**BASE, "country": "GB"},
    {**BASE, "country": "gb"},  # was upper-cased silently
    {**BASE, "country": "XX"},
    {**BASE, "country": None},
    {**BASE, "marketing_opt_in": 1},
    {**BASE, "attributes": {f"k{i}": "v" for i in range(20)}},
    {**BASE, "attributes": {f"k{i}": "v" for i in range(21)}},
    {**BASE, "attributes": {"bad key": "v"}},  # patternProperties let any other key through
    {**BASE, "attributes": {"k": "a\u0007b"}},
    {**BASE, "attributes": {"k": 1}},
    {**BASE, "role": "admin"},
]
CHANGES = [
    {"name": "Ada"},
    {},
    {"email": None},  # the document said nullable, the API said 422
    {"name": None},
    {"marketing_opt_in": None},
    {"country": None},
    {"attributes": None},
    {"marketing_opt_in": True},
    {"marketing_opt_in": True, "email": "ada@example.com"},
    {"marketing_opt_in": True, "email": "ada@example.com", "name": "Ada"},
    {"marketing_opt_in": False},
]


@pytest.mark.parametrize("body", PROFILES, ids=repr)
def test_a_registration_is_valid_by_the_document_exactly_when_the_api_accepts_it(body):
    assert published("UserProfile").is_valid(body) == accepted(UserProfile, body)


@pytest.mark.parametrize("body", CHANGES, ids=repr)
def test_a_change_is_valid_by_the_document_exactly_when_the_api_accepts_it(body):
    assert published("UserChanges").is_valid(body) == accepted(UserChanges, body)


@pytest.mark.parametrize(
    "key, valid",
    [("k", True), ("~" * 255, True), ("~" * 256, False), ("", False), ("a b", False),
     ("café", False), ("tab\tkey", False)],
)  # fmt: skip
def test_the_idempotency_key_pattern_is_the_one_the_api_checks(key, valid):
    [parameter] = [
        p
        for p in DOCUMENT["paths"]["/v1/users"]["post"]["parameters"]
        if p["name"] == "Idempotency-Key"
    ]
    assert parameter["schema"]["pattern"] == IDEMPOTENCY_KEY_PATTERN
    assert (re.fullmatch(IDEMPOTENCY_KEY_PATTERN, key) is not None) == valid
