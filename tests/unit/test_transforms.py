import pytest

from datasync.contract import parse_event
from datasync.core.transforms import pseudonym, to_crm, to_marketing, transform_for
from tests.conftest import load_event

KEY = b"0123456789abcdef-test"
USER = "0b9f5f7e-1c2d-4e3f-9a8b-7c6d5e4f3a2b"


def event(name, **data):
    raw = load_event(name)
    raw["data"].update(data)
    return parse_event(raw)


def test_crm_gets_the_full_profile():
    (record,) = to_crm(event("user_created"))
    assert record.op == "upsert" and record.key == USER
    assert record.fields == {
        "email": "ada.lovelace@example.com",
        "name": "Ada Lovelace",
        "marketing_opt_in": True,
        "country": "GB",
        "attributes": {"plan": "pro", "signup_source": "web"},
    }
    assert record.version.startswith("2026-11-20T09:15:02.123456Z#")


def test_crm_update_carries_only_the_changed_fields():
    (record,) = to_crm(event("user_updated"))
    assert record.fields == {"name": "Augusta Ada King", "country": None}


def test_crm_delete():
    (record,) = to_crm(event("user_deleted"))
    assert (record.op, record.fields) == ("delete", {})


def test_marketing_gets_contact_fields_of_opted_in_users_only():
    (record,) = to_marketing(event("user_created"))
    assert record.fields == {
        "email": "ada.lovelace@example.com",
        "name": "Ada Lovelace",
        "country": "GB",
        "subscribed": True,
    }


def test_marketing_registration_without_opt_in_is_a_removal_without_pii():
    (record,) = to_marketing(event("user_created", marketing_opt_in=False))
    assert record.fields == {"subscribed": False, "email": None, "name": None, "country": None}


def test_marketing_opt_out_is_a_removal():
    (record,) = to_marketing(event("user_opted_out"))
    assert record.op == "upsert" and record.fields["subscribed"] is False
    assert record.fields["email"] is None


def test_marketing_ignores_updates_it_does_not_care_about():
    raw = load_event("user_updated")
    raw["data"] = {"user_id": USER, "attributes": {"plan": "free"}}
    assert to_marketing(parse_event(raw)) == []


def test_marketing_delete():
    (record,) = to_marketing(event("user_deleted"))
    assert record.op == "delete"


@pytest.mark.parametrize("name", ["user_created", "user_updated", "user_deleted"])
def test_analytics_is_pseudonymous(name):
    source = parse_event(load_event(name))
    (record,) = transform_for("analytics", analytics_hash_key=KEY)(source)
    assert record.op == "append" and record.key == str(source.event_id)
    assert set(record.fields) == {"subject", "event_type", "country", "occurred_at"}
    assert record.fields["subject"] == pseudonym(USER, KEY) != USER
    text = record.model_dump_json()
    assert "ada" not in text.lower() and USER not in text


def test_pseudonym_depends_on_the_key():
    assert pseudonym(USER, KEY) != pseudonym(USER, KEY + b"x")


def test_analytics_needs_a_strong_key():
    with pytest.raises(ValueError, match="at least 16"):
        transform_for("analytics", analytics_hash_key=b"short")
    with pytest.raises(ValueError, match="needs a hash key"):
        transform_for("analytics")


def test_unknown_destination():
    with pytest.raises(ValueError, match="unknown destination"):
        transform_for("billing")  # type: ignore[arg-type]
