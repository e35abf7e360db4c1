import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import jsonschema
import pytest
from pydantic import ValidationError

from datasync.contract import (
    DestinationRecord,
    RecordPack,
    UserChanges,
    UserCreated,
    UserProfile,
    UserUpdated,
    pack_records,
    parse_event,
    parse_queue_message,
)
from datasync.contract.events import MAX_CLOCK_SKEW, format_time
from datasync.contract.schemas import SCHEMA_DIR, contract_schemas, stale_schemas
from tests import crafted
from tests.conftest import FIXTURES, load_event

SAMPLES = ["user_created", "user_updated", "user_opted_out", "user_deleted"]


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_events_round_trip_exactly(name):
    raw = load_event(name)
    event = parse_event(raw)
    assert json.loads(event.model_dump_json()) == raw


def test_partial_update_stays_partial_on_the_wire():
    event = parse_event(load_event("user_updated"))
    assert isinstance(event, UserUpdated)
    assert event.data.changed() == {"name": "Augusta Ada King", "country": None}
    assert "email" not in json.loads(event.model_dump_json())["data"]


def test_exported_schemas_match_the_models():
    assert stale_schemas() == [], "run `make schemas` and commit the result"


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_events_validate_against_the_exported_json_schema(name):
    schema = json.loads((SCHEMA_DIR / "v1-event.json").read_text())
    jsonschema.validate(load_event(name), schema)


def test_exported_schema_rejects_what_the_model_rejects():
    schema = contract_schemas()["v1-event.json"]
    bad = load_event("user_created")
    bad["schema_version"] = 2
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    with pytest.raises(ValidationError):
        parse_event(bad)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"email": "no-at-sign"}, "valid email"),
        ({"name": ""}, "at least 1 character"),
        ({"name": "x" * 201}, "at most 200 characters"),
        ({"country": "XX"}, "ISO 3166-1"),
        ({"country": "DEU"}, "pattern"),
        ({"attributes": {"k": 1}}, "valid string"),
        ({"attributes": {f"k{i}": "v" for i in range(21)}}, "at most 20"),
        ({"attributes": {"bad key!": "v"}}, "pattern"),
        ({"unknown": 1}, "Extra inputs"),
    ],
)
def test_profile_validation(change, message):
    body = {"email": "a@example.com", "name": "A", **change}
    with pytest.raises(ValidationError, match=message):
        UserProfile.model_validate(body)


def test_country_must_be_an_upper_case_code_as_the_schema_says():
    with pytest.raises(ValidationError, match="pattern"):
        UserProfile(email="a@example.com", name="A", country="de")


def test_marketing_opt_in_defaults_to_false():
    assert UserProfile(email="a@example.com", name="A").marketing_opt_in is False


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, "at least one field"),
        ({"email": None}, "cannot be null"),
        ({"marketing_opt_in": True}, "needs email and name"),
    ],
)
def test_changes_validation(body, message):
    with pytest.raises(ValidationError, match=message):
        UserChanges.model_validate(body)


def test_changes_may_clear_optional_fields():
    assert UserChanges.model_validate({"country": None}).changed() == {"country": None}


def test_occurred_at_is_normalised_to_utc_and_must_carry_a_zone():
    raw = load_event("user_created")
    raw["occurred_at"] = "2026-11-20T10:15:02.123456+01:00"
    assert parse_event(raw).occurred_at == datetime(2026, 11, 20, 9, 15, 2, 123456, tzinfo=UTC)
    raw["occurred_at"] = "2026-11-20T10:15:02"
    with pytest.raises(ValidationError, match="timezone"):
        parse_event(raw)


def test_version_orders_by_time_then_event_id():
    base = parse_event(load_event("user_created"))
    later = base.model_copy(update={"occurred_at": base.occurred_at + timedelta(microseconds=1)})
    assert later.version > base.version
    tz = timezone(timedelta(hours=5))
    same_instant = base.model_copy(update={"occurred_at": base.occurred_at.astimezone(tz)})
    assert isinstance(same_instant, UserCreated)


def test_destination_record_round_trip_and_attributes():
    event_id = uuid.uuid4()
    record = DestinationRecord(
        destination="crm",
        event_id=event_id,
        event_type="UserCreated",
        correlation_id="c-1",
        key="k",
        version=f"2026-11-20T09:15:02.123456Z#{event_id}",
        op="upsert",
        fields={"name": "A"},
    )
    assert DestinationRecord.from_json(record.model_dump_json()) == record
    attributes = record.message_attributes()
    assert attributes["event_id"]["StringValue"] == str(record.event_id)
    assert attributes["correlation_id"]["StringValue"] == "c-1"


# -- record packs ------------------------------------------------------------------------------
PACK = (FIXTURES / "messages" / "crm_pack.json").read_text()
RECORD = (FIXTURES / "messages" / "crm_record.json").read_text()


def test_a_queue_message_is_a_pack_or_a_single_record():
    pack = parse_queue_message(PACK)
    assert isinstance(pack, RecordPack) and [r.correlation_id for r in pack.records] == [
        "req-7a1f0c", "req-91bd2e"
    ]  # fmt: skip
    assert json.loads(pack.model_dump_json()) == json.loads(PACK)
    jsonschema.validate(json.loads(PACK), contract_schemas()["v1-destination-record-pack.json"])
    assert parse_queue_message(RECORD) == DestinationRecord.from_json(RECORD)


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        json.dumps({"schema_version": 1, "destination": "crm", "records": []}),
        json.dumps(
            {
                "schema_version": 2,
                **{k: v for k, v in json.loads(PACK).items() if k != "schema_version"},
            }
        ),
        PACK.replace(
            '"destination": "crm",\n  "records"', '"destination": "marketing",\n  "records"'
        ),
        json.dumps([json.loads(RECORD)]),
    ],
    ids=["not JSON", "empty", "wrong version", "another destination's records", "a list"],
)
def test_what_is_neither_a_pack_nor_a_record_is_refused(body):
    with pytest.raises(ValidationError):
        parse_queue_message(body)


def test_records_are_packed_in_order_within_the_size_limits(monkeypatch):
    records = [DestinationRecord.from_json(RECORD).model_copy(update={"key": f"u{i}"})
               for i in range(5)]  # fmt: skip
    assert [len(p.records) for p in pack_records(records)] == [5]
    monkeypatch.setattr("datasync.contract.records.MAX_PACK_RECORDS", 2)
    packs = list(pack_records(records))
    assert [len(p.records) for p in packs] == [2, 2, 1]
    assert [r.key for p in packs for r in p.records] == [f"u{i}" for i in range(5)]
    monkeypatch.setattr("datasync.contract.records.MAX_PACK_BYTES", 10)  # smaller than a record
    assert [len(p.records) for p in pack_records(records)] == [1] * 5


def test_a_pack_names_every_event_and_correlation_id_in_its_attributes():
    attributes = {
        k: v["StringValue"] for k, v in parse_queue_message(PACK).message_attributes().items()
    }
    assert attributes == {
        "record_count": "2",
        "event_ids": "8a7b6c5d-4e3f-4a2b-9c1d-0e9f8a7b6c5d,9b8c7d6e-5f4a-4b3c-8d2e-1f0a9b8c7d6e",
        "correlation_ids": "req-7a1f0c,req-91bd2e",
        "schema_version": "1",
    }


# -- crafted messages and forged versions ---------------------------------------------------------
NOT_A_RECORD = {
    **{k: v for k, v in crafted.record_bodies("crm", "c").items() if "another" not in k},
    **crafted.forged_versions("crm", "u1", "c"),
    "a number": "5",
    "null": "null",
    "true": "true",
    "empty list": "[]",
    "empty object": "{}",
    "empty": "",
    "deep and not JSON": '{"a":' * 5_000,
    "a pack of packs": json.dumps({"records": [{"records": []}], "destination": "crm"}),
}


@pytest.mark.parametrize("body", list(NOT_A_RECORD.values()), ids=list(NOT_A_RECORD))
def test_any_text_is_a_pack_a_record_or_a_validation_error(body):
    """Callers catch ValidationError only: anything else (RecursionError) would kill them."""
    with pytest.raises(ValidationError):
        parse_queue_message(body)


def test_a_destination_queue_message_nested_within_the_parser_limit_still_parses():
    record = crafted.sample_record("crm")
    record["fields"]["attributes"] = json.loads(crafted.nested("deep", depth=150))
    assert parse_queue_message(json.dumps(record)).fields["attributes"]


def sample_record_with(version: str, event_id: str | None = None) -> str:
    record = crafted.sample_record("crm")
    record["event_id"] = event_id or version.partition("#")[2] or record["event_id"]
    return json.dumps({**record, "version": version})


EVENT_ID = "8a7b6c5d-4e3f-4a2b-9c1d-0e9f8a7b6c5d"


@pytest.mark.parametrize(
    ("version", "problem"),
    [
        ("~~~~", "not <occurred_at"),
        ("", "not <occurred_at"),
        (f"2026-11-20T09:15:02Z#{EVENT_ID}", "not <occurred_at"),  # no microseconds
        (f"2026-11-20T09:15:02.123456+00:00#{EVENT_ID}", "not <occurred_at"),
        (f"2026-13-20T09:15:02.123456Z#{EVENT_ID}", "not <occurred_at"),  # month 13
        (f"2026-11-20T09:15:02.123456Z#{EVENT_ID.upper()}", "not <occurred_at"),
        (f"2026-11-20T09:15:02.123456Z#{EVENT_ID}~", "not <occurred_at"),
        ("9999-12-31T23:59:59.999999Z#" + EVENT_ID, "its time is more than 5 minutes ahead"),
    ],
    ids=["tildes", "empty", "seconds", "offset", "month 13", "upper case", "suffix", "year 9999"],
)
def test_a_record_version_must_be_the_one_its_producer_writes(version, problem):
    with pytest.raises(ValidationError, match=problem):
        parse_queue_message(sample_record_with(version, event_id=EVENT_ID))
    if "ahead" not in problem and "-13-" not in version:  # what a pattern can say
        schema = contract_schemas()["v1-destination-record.json"]
        with pytest.raises(jsonschema.ValidationError, match="does not match"):
            jsonschema.validate(json.loads(sample_record_with(version, EVENT_ID)), schema)


def test_a_record_version_must_name_the_records_own_event():
    other = str(uuid.uuid4())
    with pytest.raises(ValidationError, match="its event id is not the record's event_id"):
        parse_queue_message(sample_record_with(f"2026-11-20T09:15:02.123456Z#{other}", EVENT_ID))


def test_a_version_within_the_clock_skew_is_accepted_and_one_past_it_refused():
    event_id = str(uuid.uuid4())
    soon = datetime.now(UTC) + MAX_CLOCK_SKEW - timedelta(seconds=30)
    assert parse_queue_message(sample_record_with(f"{format_time(soon)}#{event_id}"))
    late = soon + timedelta(seconds=60)
    with pytest.raises(ValidationError, match="ahead of this host's clock"):
        parse_queue_message(sample_record_with(f"{format_time(late)}#{event_id}"))


def test_an_event_that_occurred_ahead_of_the_clock_is_refused():
    """The API stamps occurred_at with its own clock: a later one is a forgery or a clock off."""
    raw = load_event("user_created")
    raw["occurred_at"] = format_time(datetime.now(UTC) + MAX_CLOCK_SKEW + timedelta(minutes=1))
    with pytest.raises(ValidationError, match="occurred_at"):
        parse_event(raw)
    raw["occurred_at"] = format_time(datetime.now(UTC) + timedelta(seconds=10))
    assert parse_event(raw).version.startswith(raw["occurred_at"])
