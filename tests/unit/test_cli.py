import json
import uuid

import pytest

from apps.cli.main import main
from datasync.contract import parse_event
from datasync.core.exit_codes import ABSENT, CONFIG, UNAVAILABLE, USAGE
from datasync.core.stores import open_store
from datasync.core.transforms import to_crm, to_marketing
from tests.builders import record
from tests.conftest import FIXTURES, load_event
from tests.unit.conftest import drain

EXIT_NOT_FOUND, EXIT_CONFIG, EXIT_UNAVAILABLE = ABSENT, CONFIG, UNAVAILABLE
USER = "0b9f5f7e-1c2d-4e3f-9a8b-7c6d5e4f3a2b"  # the user of tests/fixtures/events


@pytest.fixture
def local_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("DATASYNC_ENV_FILE", str(tmp_path / "missing.env"))
    monkeypatch.setenv("DATASYNC_STORE_DIR", str(tmp_path / "stores"))
    monkeypatch.setenv("DATASYNC_ANALYTICS_HASH_KEY", "0123456789abcdef")
    for name in ("DATABASE_URL", "DATASYNC_CRM_QUEUE_URL", "DATASYNC_CRM_DLQ_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "stores"


def apply_events(store_dir, transform, destination, *names, **data):
    """The fixture events, through a destination's transform, into its store."""
    store = open_store(destination, store_dir=store_dir)
    for name in names:
        raw = load_event(name)
        raw["data"].update(data if name == "user_created" else {})
        store.apply(transform(parse_event(raw)))
    store.close()


def test_get_prints_the_record_as_json_without_internals(local_settings, capsys):
    apply_events(local_settings, to_crm, "crm", "user_created", "user_updated")
    assert main(["get", "crm", USER]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["name"] == "Augusta Ada King" and shown["email"] == "ada.lovelace@example.com"
    assert "_versions" not in shown and "deleted" not in shown


def test_get_internal_shows_the_versions(local_settings, capsys):
    apply_events(local_settings, to_crm, "crm", "user_created")
    assert main(["get", "crm", USER, "--internal"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["_versions"]["name"].startswith("2026-11-20T09:15:02.123456Z#")


def test_get_exits_3_with_a_message_when_absent(local_settings, capsys):
    assert main(["get", "marketing", str(uuid.uuid4())]) == EXIT_NOT_FOUND
    assert "no marketing record" in capsys.readouterr().err


def test_an_erased_user_is_absent_and_the_tombstone_only_internal(local_settings, capsys):
    apply_events(local_settings, to_crm, "crm", "user_created", "user_deleted")
    assert main(["get", "crm", USER]) == ABSENT
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"no crm record for {USER}: erased at 2026-11-23T17:45:10.500000Z" in captured.err
    assert main(["get", "crm", USER, "--internal"]) == 0
    tombstone = json.loads(capsys.readouterr().out)
    assert tombstone["deleted"] is True and tombstone["deleted_version"].startswith(
        "2026-11-23T17:45:10.500000Z#"
    )
    assert "email" not in tombstone


def test_a_contact_who_never_opted_in_is_absent_from_marketing(local_settings, capsys):
    apply_events(local_settings, to_marketing, "marketing", "user_created", marketing_opt_in=False)
    assert main(["get", "marketing", USER]) == ABSENT
    assert f"no marketing record for {USER}: not subscribed" in capsys.readouterr().err
    assert main(["get", "marketing", USER, "--internal"]) == 0
    assert json.loads(capsys.readouterr().out)["subscribed"] is False


def test_a_contact_who_opted_out_is_absent_and_one_who_opted_in_present(local_settings, capsys):
    apply_events(local_settings, to_marketing, "marketing", "user_created")
    assert main(["get", "marketing", USER]) == 0
    assert json.loads(capsys.readouterr().out)["subscribed"] is True
    apply_events(local_settings, to_marketing, "marketing", "user_opted_out")
    assert main(["get", "marketing", USER]) == ABSENT
    assert "not subscribed" in capsys.readouterr().err


def test_a_usage_error_and_a_config_error_have_different_exit_codes(local_settings, capsys):
    with pytest.raises(SystemExit) as usage:
        main(["get", "nowhere", USER])
    assert usage.value.code == USAGE == 2
    assert main(["dlq", "crm"]) == CONFIG != USAGE


def test_get_analytics_looks_up_the_pseudonym(local_settings, capsys):
    from datasync.core.transforms import pseudonym

    user_id = str(uuid.uuid4())
    subject = pseudonym(user_id, b"0123456789abcdef")
    store = open_store("analytics", store_dir=local_settings)
    event_id = uuid.uuid4()
    store.apply(
        [
            record(
                "analytics",
                key=str(event_id),
                at=1,
                op="append",
                event_id=event_id,
                subject=subject,
            )
        ]
    )
    store.close()
    assert main(["get", "analytics", user_id]) == 0
    assert json.loads(capsys.readouterr().out)["subject"] == subject


def test_missing_settings_say_what_to_set(local_settings, capsys):
    assert main(["dlq", "crm"]) == EXIT_CONFIG
    assert "DATASYNC_CRM_DLQ_URL" in capsys.readouterr().err


def test_an_unreachable_endpoint_is_a_clear_error_not_a_traceback(
    local_settings, monkeypatch, capsys
):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("DATASYNC_CRM_QUEUE_URL", "http://127.0.0.1:9/000000000000/q")
    assert main(["status"]) == EXIT_UNAVAILABLE
    assert "Is `make run` running" in capsys.readouterr().err


def test_schemas_check_passes_on_the_committed_files(capsys):
    assert main(["schemas"]) == 0


def test_dlq_shows_why_and_redrive_sends_each_message_back_without_its_failure(
    local_settings, sqs, queues, monkeypatch, capsys
):
    from datasync.core.queues import dead_letter

    buffer = sqs.create_queue(QueueName="dest-buffer")["QueueUrl"]
    for name, url in (("QUEUE", queues["queue"]), ("DLQ", queues["dlq"]), ("BUFFER_QUEUE", buffer)):
        monkeypatch.setenv(f"DATASYNC_CRM_{name}_URL", url)
    record_body = (FIXTURES / "messages" / "crm_record.json").read_text()
    event_body = (FIXTURES / "events" / "eventbridge_user_created.json").read_text()
    for body in (record_body, event_body):
        dead_letter(sqs, queues["dlq"], body, reason="store was down", stage="consume",
                    receive_count=5)  # fmt: skip
    assert main(["dlq", "crm"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(m["reason"], m["stage"], m["receive_count"]) for m in shown] == [
        ("store was down", "consume", "5")
    ] * 2
    assert main(["dlq", "crm", "--redrive"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "to_buffer_queue": 1, "to_queue": 1, "failed": []
    }  # fmt: skip
    [to_queue] = drain(sqs, queues["queue"])
    [to_buffer] = drain(sqs, buffer)
    assert (to_queue["Body"], to_buffer["Body"]) == (record_body, event_body)
    assert not any(a.startswith("failure_") for a in to_queue.get("MessageAttributes", {}))
    assert drain(sqs, queues["dlq"]) == []


def test_redrive_resets_the_attempts_of_a_record_a_pack_had_retried(
    local_settings, sqs, queues, monkeypatch, capsys
):
    from datasync.core.queues import attempt_attribute, dead_letter

    monkeypatch.setenv("DATASYNC_CRM_QUEUE_URL", queues["queue"])
    monkeypatch.setenv("DATASYNC_CRM_DLQ_URL", queues["dlq"])
    monkeypatch.setenv("DATASYNC_CRM_BUFFER_QUEUE_URL", queues["queue"])
    one = record(key="u1", at=1)
    dead_letter(sqs, queues["dlq"], one.model_dump_json(), reason="store refused it",
                stage="consume", receive_count=5,
                attributes={**one.message_attributes(), **attempt_attribute(5)})  # fmt: skip
    assert main(["dlq", "crm", "--redrive"]) == 0
    [back] = drain(sqs, queues["queue"])
    assert set(back["MessageAttributes"]) == {"event_id", "correlation_id", "event_type",
                                              "schema_version"}  # fmt: skip


def test_dlq_names_every_event_of_a_pack_that_could_not_be_read(
    local_settings, sqs, queues, monkeypatch, capsys
):
    from datasync.contract import RecordPack
    from datasync.core.queues import dead_letter

    monkeypatch.setenv("DATASYNC_CRM_DLQ_URL", queues["dlq"])
    pack = RecordPack(destination="marketing", records=[record("marketing", key=k) for k in "ab"])
    dead_letter(sqs, queues["dlq"], pack.model_dump_json(), reason="a marketing pack on the crm "
                "queue", stage="consume", attributes=pack.message_attributes())  # fmt: skip
    assert main(["dlq", "crm"]) == 0
    [shown] = json.loads(capsys.readouterr().out)
    assert shown["records"] == "2"
    assert shown["event_ids"] == [str(r.event_id) for r in pack.records]
    assert shown["correlation_ids"] == ["test", "test"]


def test_status_says_what_its_numbers_count(local_settings, sqs, queues, monkeypatch, capsys):
    buffer = sqs.create_queue(QueueName="dest-buffer")["QueueUrl"]
    monkeypatch.setenv("DATASYNC_CRM_QUEUE_URL", queues["queue"])
    monkeypatch.setenv("DATASYNC_CRM_DLQ_URL", queues["dlq"])
    monkeypatch.setenv("DATASYNC_CRM_BUFFER_QUEUE_URL", buffer)
    for body in ("event 1", "event 2", "event 3"):
        sqs.send_message(QueueUrl=buffer, MessageBody=body)
    sqs.send_message(QueueUrl=queues["queue"], MessageBody="a pack")
    assert main(["status", "--json"]) == 0
    crm = json.loads(capsys.readouterr().out)["crm"]
    assert (crm["buffer"], crm["queue"]) == ({"visible": 3, "in_flight": 0},
                                             {"visible": 1, "in_flight": 0})  # fmt: skip
    assert main(["status"]) == 0
    table = capsys.readouterr().out
    [row] = [line.split() for line in table.splitlines() if line.startswith("crm ")]
    assert row == ["crm", "3", "0", "1", "0", "0", "0"]
    assert "events to transform" in table and "packs to apply" in table
    assert "one per event" in table and "records of one Lambda batch" in table
