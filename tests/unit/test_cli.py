import http.server
import io
import json
import sqlite3
import threading
import time
import uuid
from collections import Counter

import boto3
import pytest

from apps.cli.main import main
from datasync.contract import parse_event
from datasync.core.exit_codes import ABSENT, CONFIG, FAILED, UNAVAILABLE, USAGE
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
    open_store("marketing", store_dir=local_settings).close()  # a consumer started, nothing yet
    assert main(["get", "marketing", str(uuid.uuid4())]) == EXIT_NOT_FOUND
    assert "no marketing record" in capsys.readouterr().err


def test_get_says_there_is_no_store_yet_and_creates_none(local_settings, capsys):
    assert main(["get", "crm", USER]) == FAILED
    assert "no crm store at" in capsys.readouterr().err
    assert not local_settings.exists()


def test_get_says_the_store_cannot_be_reached_and_exits_4(local_settings, capsys):
    (local_settings / "crm.sqlite3").mkdir(parents=True)  # there, but no database can open
    assert main(["get", "crm", USER]) == EXIT_UNAVAILABLE
    err = capsys.readouterr().err
    assert (
        "datasync: the store cannot be reached (OperationalError: " in err and "DATABASE_URL" in err
    )


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


def test_a_contact_whose_update_arrived_before_the_registration_is_absent(local_settings, capsys):
    apply_events(local_settings, to_marketing, "marketing", "user_updated")  # a name, no consent
    assert main(["get", "marketing", USER]) == ABSENT
    captured = capsys.readouterr()
    assert f"no marketing record for {USER}: not subscribed" in captured.err
    assert captured.out == "" and "Augusta" not in captured.err, "no contact details shown"
    apply_events(local_settings, to_marketing, "marketing", "user_created")  # opted in, earlier
    assert main(["get", "marketing", USER]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "Augusta Ada King"


def test_a_usage_error_and_a_config_error_have_different_exit_codes(local_settings, capsys):
    with pytest.raises(SystemExit) as usage:
        main(["get", "nowhere", USER])
    assert usage.value.code == USAGE == 2
    assert main(["dlq", "list", "crm"]) == CONFIG != USAGE


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
    assert main(["dlq", "list", "crm"]) == EXIT_CONFIG
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
    assert main(["dlq", "list", "crm", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(m["reason"], m["stage"], m["receive_count"]) for m in shown] == [
        ("store was down", "consume", "5")
    ] * 2
    assert main(["dlq", "redrive", "crm", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "dry_run": False, "to_buffer_queue": 1, "to_queue": 1, "left_in_dlq": 0, "failed": []
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
    assert main(["dlq", "redrive", "crm"]) == 0
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
    assert main(["dlq", "list", "crm", "--json"]) == 0
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
    open_store("crm", store_dir=local_settings).close()  # its consumer started
    assert main(["status", "--json"]) == 0
    crm = json.loads(capsys.readouterr().out)["crm"]
    assert (crm["buffer"], crm["queue"]) == (
        {"visible": 3, "in_flight": 0, "oldest_age_seconds": None},  # moto: no such metric
        {"visible": 1, "in_flight": 0, "oldest_age_seconds": None},
    )
    assert main(["status"]) == 0
    table = capsys.readouterr().out
    [row] = [line.split() for line in table.splitlines() if line.startswith("crm ")]
    assert row == ["crm", "3", "0", "1", "0", "0", "0", "ok"]
    assert "events to transform" in table and "packs to apply" in table
    assert "one per event" in table and "records of one Lambda batch" in table


def test_status_says_a_table_is_missing_and_leaves_it_missing(crm_queues, local_settings, capsys):
    apply_events(local_settings, to_crm, "crm", "user_created")
    db = sqlite3.connect(local_settings / "crm.sqlite3", isolation_level=None)
    db.execute("ALTER TABLE datasync_crm_applied_events RENAME TO renamed_by_a_bad_migration")
    assert main(["status", "--json"]) == 0
    crm = json.loads(capsys.readouterr().out)["crm"]
    assert crm["applied_events"] is None and "no table datasync_crm_" in crm["store_problem"]
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    [row] = [line.split() for line in out.splitlines() if line.startswith("crm ")]
    assert row[6] == "-" and "  crm: the crm store has no table" in out
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "datasync_crm_applied_events" not in tables  # status did not "repair" it


# -- the operator's commands ----------------------------------------------------------------


@pytest.fixture
def crm_queues(local_settings, sqs, queues, monkeypatch):
    """The crm destination's three queues (moto), as the CLI's settings."""
    buffer = sqs.create_queue(QueueName="dest-buffer")["QueueUrl"]
    urls = {"QUEUE": queues["queue"], "DLQ": queues["dlq"], "BUFFER_QUEUE": buffer}
    for name, url in urls.items():
        monkeypatch.setenv(f"DATASYNC_CRM_{name}_URL", url)
    return {"queue": queues["queue"], "dlq": queues["dlq"], "buffer": buffer}


def dead_letters(sqs, dlq, count, reason="store was down", stage="consume"):
    """``count`` records dead-lettered with a reason; their event ids, in order."""
    from datasync.core.queues import dead_letter

    event_ids = []
    for i in range(count):
        one = record(key=f"user-{reason[:5]}-{i}", at=1)
        dead_letter(sqs, dlq, one.model_dump_json(), reason=reason, stage=stage, receive_count=5,
                    attributes=one.message_attributes())  # fmt: skip
        event_ids.append(str(one.event_id))
    return event_ids


def visible(sqs, url):
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def test_dlq_list_pages_past_ten_sees_each_once_and_hides_nothing(crm_queues, sqs, capsys):
    event_ids = dead_letters(sqs, crm_queues["dlq"], 25)
    assert main(["dlq", "list", "crm", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert sorted(m["event_id"] for m in shown) == sorted(event_ids)  # 25, none twice
    assert all(m["reason"] == "store was down" and m["age_seconds"] >= 0 for m in shown)
    assert visible(sqs, crm_queues["dlq"]) == 25, "a listing must leave every message visible"
    assert main(["dlq", "list", "crm"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["age", "reason", "stage", "receive_count",
                                             "event_id", "correlation_id"]  # fmt: skip
    assert sum(event_id in table for event_id in event_ids) == 25
    assert main(["dlq", "list", "crm", "--json", "--limit", "12"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 12


def test_redrive_dry_run_moves_nothing_and_says_what_it_would(crm_queues, sqs, capsys):
    dead_letters(sqs, crm_queues["dlq"], 12)
    assert main(["dlq", "redrive", "crm", "--dry-run", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["dry_run"], report["to_queue"], report["to_buffer_queue"]) == (True, 12, 0)
    assert visible(sqs, crm_queues["dlq"]) == 12 and visible(sqs, crm_queues["queue"]) == 0


def test_redrive_filter_moves_only_matching_and_releases_the_rest(crm_queues, sqs, capsys):
    down = dead_letters(sqs, crm_queues["dlq"], 11, reason="store was down")
    refused = dead_letters(sqs, crm_queues["dlq"], 4, reason="record refused: bad country")
    assert main(["dlq", "redrive", "crm", "--filter", "reason=BAD COUNTRY", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["to_queue"], report["left_in_dlq"]) == (4, 11)
    moved = [
        m["MessageAttributes"]["event_id"]["StringValue"] for m in drain(sqs, crm_queues["queue"])
    ]
    assert sorted(moved) == sorted(refused)
    assert visible(sqs, crm_queues["dlq"]) == 11, "the others are visible again at once"
    left = [
        m["MessageAttributes"]["event_id"]["StringValue"] for m in drain(sqs, crm_queues["dlq"])
    ]
    assert sorted(left) == sorted(down)


def test_redrive_limit_moves_at_most_n(crm_queues, sqs, capsys):
    dead_letters(sqs, crm_queues["dlq"], 15)
    assert main(["dlq", "redrive", "crm", "--limit", "7", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["to_queue"] == 7
    assert (visible(sqs, crm_queues["queue"]), visible(sqs, crm_queues["dlq"])) == (7, 8)


def test_a_bad_filter_is_a_clear_error_not_a_usage_error(crm_queues, capsys):
    assert main(["dlq", "redrive", "crm", "--filter", "colour=red"]) == CONFIG
    assert "KEY=VALUE" in capsys.readouterr().err


class CountingSqs:
    """A real (moto) client that counts calls, and can refuse some sends like SQS does."""

    def __init__(self, sqs, refuse_body=None):
        self.sqs, self.refuse_body, self.calls = sqs, refuse_body, Counter()

    def __getattr__(self, name):
        method = getattr(self.sqs, name)

        def counted(**kwargs):
            self.calls[name] += 1
            if name == "send_message_batch" and self.refuse_body:
                refused = [e for e in kwargs["Entries"] if self.refuse_body in e["MessageBody"]]
                kept = [e for e in kwargs["Entries"] if e not in refused]
                answer = method(**{**kwargs, "Entries": kept}) if kept else {}
                failed = [{"Id": e["Id"], "SenderFault": False, "Code": "InternalError"}
                          for e in refused]  # fmt: skip
                return {"Successful": answer.get("Successful", []), "Failed": failed}
            return method(**kwargs)

        return counted


def test_redrive_sends_and_deletes_in_batches_of_ten(crm_queues, sqs):
    from apps.cli.dlq import redrive

    dead_letters(sqs, crm_queues["dlq"], 25)
    counting = CountingSqs(sqs)
    report = redrive(counting, crm_queues["dlq"], buffer_url=crm_queues["buffer"],
                     queue_url=crm_queues["queue"], limit=1000)  # fmt: skip
    assert report.to_queue == 25
    assert counting.calls["send_message_batch"] == 3 and counting.calls["delete_message_batch"] == 3
    assert counting.calls["send_message"] == 0 and counting.calls["delete_message"] == 0


def test_a_message_whose_send_failed_stays_in_the_dlq(crm_queues, sqs, capsys):
    from apps.cli.dlq import redrive

    [kept] = dead_letters(sqs, crm_queues["dlq"], 1, reason="kept")
    dead_letters(sqs, crm_queues["dlq"], 3, reason="other")
    report = redrive(CountingSqs(sqs, refuse_body="user-kept"), crm_queues["dlq"],
                     buffer_url=crm_queues["buffer"], queue_url=crm_queues["queue"], limit=100)  # fmt: skip
    assert (report.to_queue, len(report.failed)) == (3, 1)
    [left] = drain(sqs, crm_queues["dlq"])  # visible again at once, not after 5 minutes
    assert left["MessageAttributes"]["event_id"]["StringValue"] == kept


class PoisonAgain:
    """SQS with a consumer that dead-letters whatever reaches the queue again at once, as one
    does with a message whose cause is not fixed (each copy is a new DLQ message)."""

    def __init__(self, sqs, queues):
        self.sqs, self.queues = sqs, queues

    def __getattr__(self, name):
        return getattr(self.sqs, name)

    def send_message_batch(self, **kwargs):
        from datasync.core.queues import dead_letter

        answer = self.sqs.send_message_batch(**kwargs)
        if kwargs["QueueUrl"] == self.queues["queue"]:
            time.sleep(0.002)  # SentTimestamp has milliseconds: the copy is younger
            for message in drain(self.sqs, self.queues["queue"]):
                dead_letter(self.sqs, self.queues["dlq"], message["Body"], reason="still broken",
                            stage="consume", receive_count=5)  # fmt: skip
        return answer


def test_redrive_moves_what_was_there_and_not_what_fails_again_meanwhile(crm_queues, sqs):
    from apps.cli.dlq import redrive

    dead_letters(sqs, crm_queues["dlq"], 23)
    time.sleep(0.002)
    report = redrive(PoisonAgain(sqs, crm_queues), crm_queues["dlq"], buffer_url=crm_queues["buffer"],
                     queue_url=crm_queues["queue"], limit=10_000)  # fmt: skip
    # Each moved once; their copies, back in the DLQ while the pass went on, stay for a next try.
    assert (report.to_queue, report.skipped) == (23, 23)
    assert visible(sqs, crm_queues["dlq"]) == 23


def test_redrive_twice_sends_each_message_once(crm_queues, sqs, capsys):
    dead_letters(sqs, crm_queues["dlq"], 13)
    assert main(["dlq", "redrive", "crm"]) == 0
    assert main(["dlq", "redrive", "crm"]) == 0
    assert "sent 0 to the buffer queue" in capsys.readouterr().out.splitlines()[-1]
    assert len(drain(sqs, crm_queues["queue"])) == 13


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_purge_refuses_without_a_terminal_or_yes(crm_queues, sqs, monkeypatch, capsys):
    dead_letters(sqs, crm_queues["dlq"], 3)
    monkeypatch.setattr("sys.stdin", io.StringIO("crm\n"))  # a pipe, not a person
    assert main(["dlq", "purge", "crm"]) == CONFIG
    assert "--yes" in capsys.readouterr().err
    assert visible(sqs, crm_queues["dlq"]) == 3


def test_purge_asks_and_purges_only_when_confirmed(crm_queues, sqs, monkeypatch, capsys):
    dead_letters(sqs, crm_queues["dlq"], 3)
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))  # not the destination's name
    assert main(["dlq", "purge", "crm"]) == 1
    assert "Delete all 3 message(s)" in capsys.readouterr().err
    assert visible(sqs, crm_queues["dlq"]) == 3
    monkeypatch.setattr("sys.stdin", Terminal("crm\n"))
    assert main(["dlq", "purge", "crm"]) == 0
    assert visible(sqs, crm_queues["dlq"]) == 0


def test_purge_yes_does_not_ask(crm_queues, sqs, monkeypatch):
    dead_letters(sqs, crm_queues["dlq"], 2)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["dlq", "purge", "crm", "--yes"]) == 0
    assert visible(sqs, crm_queues["dlq"]) == 0


def test_progress_is_a_plain_line_when_stderr_is_not_a_terminal(crm_queues, sqs, capsys):
    dead_letters(sqs, crm_queues["dlq"], 3)
    assert main(["dlq", "redrive", "crm"]) == 0
    assert "redrive crm: 3/3 failed=0" in capsys.readouterr().err


def test_status_says_alarm_where_cloudwatch_would(crm_queues, sqs, capsys):
    dead_letters(sqs, crm_queues["dlq"], 1)
    assert main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["crm"]["alarms"] == ["dlq-not-empty"] and status["marketing"]["alarms"] == []
    assert main(["status"]) == 0
    [row] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("crm ")]
    assert row.endswith("ALARM (dlq-not-empty)")


def test_status_alarms_on_the_oldest_message_age_over_the_terraform_thresholds():
    from apps.cli.status import alarms

    assert alarms({"queue": {"oldest_age_seconds": 901}}) == ["queue-oldest-message"]
    assert (
        alarms({"queue": {"oldest_age_seconds": 900}, "buffer": {"oldest_age_seconds": 599}}) == []
    )
    assert alarms({"buffer": {"oldest_age_seconds": 601}, "dlq_depth": 0}) == [
        "buffer-oldest-message"
    ]


def test_the_alarm_thresholds_are_terraforms_defaults():
    import re

    from apps.cli.status import OLDEST_MESSAGE_ALARM_SECONDS
    from devstack.paths import TERRAFORM_DIR

    variables = (TERRAFORM_DIR / "variables.tf").read_text()

    def default(name):
        block = re.search(rf'variable "{name}" {{.*?default\s*=\s*(\d+)', variables, re.S)
        return int(block.group(1))

    assert OLDEST_MESSAGE_ALARM_SECONDS == {
        "queue": default("oldest_message_alarm_seconds"),
        "buffer": default("buffer_oldest_message_alarm_seconds"),
    }


# -- trace ---------------------------------------------------------------------------------


def test_trace_assembles_accepted_applied_and_dead_lettered(
    crm_queues, sqs, local_settings, tmp_path, monkeypatch, capsys
):
    from datasync.core.queues import dead_letter

    monkeypatch.setenv("DATASYNC_VAR_DIR", str(tmp_path / "var"))
    logs = tmp_path / "var" / "local" / "logs"
    logs.mkdir(parents=True)
    event = load_event("user_created")
    event_id, correlation_id = event["event_id"], event["correlation_id"]
    (logs / "api.log").write_text(
        json.dumps({"time": "2026-11-20T09:15:02.200Z", "message": "request", "status": 202,
                    "method": "POST", "route": "/v1/users", "correlation_id": correlation_id,
                    "event_id": event_id}) + "\n"
        + json.dumps({"message": "request", "status": 202, "event_id": "another"}) + "\n"
    )  # fmt: skip
    apply_events(local_settings, to_crm, "crm", "user_created")
    marketing = to_marketing(parse_event(event))[0]
    dead_letter(sqs, crm_queues["dlq"], marketing.model_dump_json(), reason="store refused it",
                stage="consume", attributes=marketing.message_attributes())  # fmt: skip
    for wanted in (correlation_id, event_id, USER):
        assert main(["trace", wanted, "--json", "--no-peek"]) == 0
        found = json.loads(capsys.readouterr().out)
        where = sorted((row["where"], row["destination"]) for row in found["found"])
        assert where == [("accepted (API log)", None), ("applied", "crm"),
                         ("dead-lettered", "crm")], wanted  # fmt: skip
        assert event_id in found["event_ids"]
    assert main(["trace", correlation_id, "--no-peek"]) == 0
    table = capsys.readouterr().out
    assert "store refused it (stage consume)" in table and "202 POST /v1/users" in table


def test_trace_peeks_at_the_queues_without_consuming(crm_queues, sqs, local_settings, capsys):
    body = (FIXTURES / "events" / "eventbridge_user_created.json").read_text()
    sqs.send_message(QueueUrl=crm_queues["buffer"], MessageBody=body)
    event_id = json.loads(body)["detail"]["event_id"]
    assert main(["trace", event_id, "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)["found"]
    assert (row["where"], row["destination"]) == ("waiting: buffer queue", "crm")
    assert visible(sqs, crm_queues["buffer"]) == 1


def test_trace_exits_3_when_found_nowhere(crm_queues, capsys):
    assert main(["trace", str(uuid.uuid4())]) == ABSENT
    assert "found nowhere" in capsys.readouterr().err


# -- logs ----------------------------------------------------------------------------------


def test_a_json_log_line_renders_as_one_readable_line():
    from apps.cli.logs import render

    line = json.dumps({"time": "2026-11-20T09:15:02.123Z", "level": "INFO",
                       "service": "datasync-consumer-crm", "logger": "apps.consumers.worker",
                       "message": "batch applied", "correlation_id": "req-1",
                       "events": {"applied": ["e1/req-1", "e2/req-2"], "duplicate": ["e3/x"]}})  # fmt: skip
    assert render(line) == ("09:15:02.123 INFO  datasync-consumer-crm batch applied "
                            "correlation_id=req-1 events=applied:2,duplicate:1")  # fmt: skip
    assert render("MiniStack ready on :4566") == "MiniStack ready on :4566"


def test_logs_merges_components_by_time_and_follows_new_lines(tmp_path, monkeypatch, capsys):
    from apps.cli.logs import follow

    monkeypatch.setenv("DATASYNC_VAR_DIR", str(tmp_path))
    logs = tmp_path / "local" / "logs"
    logs.mkdir(parents=True)
    (logs / "api.log").write_text(
        json.dumps({"time": "2026-01-01T00:00:02.000Z", "message": "b"}) + "\n"
    )
    (logs / "consumer-crm.log").write_text(
        json.dumps({"time": "2026-01-01T00:00:01.000Z", "message": "a"}) + "\n"
        + json.dumps({"time": "2026-01-01T00:00:03.000Z", "message": "c"}) + "\n"
    )  # fmt: skip
    assert main(["logs"]) == 0
    assert [line.split()[-1] for line in capsys.readouterr().out.splitlines()] == ["a", "b", "c"]
    assert main(["logs", "api", "--raw"]) == 0
    assert json.loads(capsys.readouterr().out)["message"] == "b"
    assert main(["logs", "nowhere"]) == ABSENT

    files, seen = [logs / "api.log"], []
    lines = follow(files, stop=lambda: len(seen) >= 2)
    with (logs / "api.log").open("a") as log:
        log.write('{"message": "new"}\nplain te')  # the second line is not complete yet
    seen.append(next(lines))
    with (logs / "api.log").open("a") as log:
        log.write("xt\n")
    seen.append(next(lines))
    assert seen == [("api", '{"message": "new"}'), ("api", "plain text")]


# -- send ----------------------------------------------------------------------------------


class FakeApi(http.server.BaseHTTPRequestHandler):
    """Answers like the API: 202 with ids; 503 for every fifth request."""

    requests: list = []

    def _answer(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        FakeApi.requests.append((self.command, self.path, json.loads(body or b"null"),
                                 self.headers["X-API-Key"]))  # fmt: skip
        status = 503 if len(FakeApi.requests) % 5 == 0 else 202
        user_id = self.path.rsplit("/", 1)[-1] if self.command != "POST" else str(uuid.uuid4())
        payload = json.dumps({"user_id": user_id, "event_id": str(uuid.uuid4())}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_POST = do_PATCH = do_DELETE = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_api():
    FakeApi.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_send_sends_realistic_users_at_the_rate_and_sums_up(fake_api, local_settings, tmp_path,
                                                           monkeypatch, capsys):  # fmt: skip
    monkeypatch.setenv("DATASYNC_ENV", "local")
    out = tmp_path / "users.txt"
    started = time.monotonic()
    code = main(["send", "--count", "40", "--rate", "100", "--seed", "3", "--api-url", fake_api,
                 "--out", str(out), "--json"])  # fmt: skip
    elapsed = time.monotonic() - started
    summary = json.loads(capsys.readouterr().out)
    assert code == 1, "some were refused"
    assert (summary["sent"], summary["accepted"], summary["refused"]) == (40, 32, {"503": 8})
    assert 0.39 <= elapsed < 3, "40 requests at 100/s take about 0.4 s"
    assert set(summary["latency_ms"]) == {"p50", "p99"}  # their values: the test below
    posts = [body for method, _, body, _ in FakeApi.requests if method == "POST"]
    assert len(posts) > len(FakeApi.requests) / 2, "mostly registrations"
    assert {method for method, *_ in FakeApi.requests} > {"POST"}, "some updates and deletes"
    assert all(body["email"].rsplit("@", 1)[1] in ("example.com", "example.org", "example.net")
               for body in posts)  # fmt: skip
    assert {key for *_, key in FakeApi.requests} == {"local-dev-key"}
    assert len(out.read_text().split()) == summary["users"] > 0


def test_the_send_summary_says_the_median_and_the_tail_latency():
    from apps.cli.send import Result, SendSummary

    # 98 fast answers and two slow ones: the median is the fast one, the 99th percentile is
    # interpolated between the two slowest (inclusive method: 0.5 x 0.99 + 0.9 x 0.01 s).
    latencies = [0.010] * 98 + [0.9, 0.5]
    summary = SendSummary([Result("register", 202, latency) for latency in latencies])
    assert summary.as_dict()["latency_ms"] == {"p50": 10.0, "p99": 504.0}
    one = SendSummary([Result("register", 202, 0.25)]).as_dict()["latency_ms"]
    assert one == {"p50": 250.0, "p99": 250.0}
    assert SendSummary().as_dict()["latency_ms"] == {"p50": None, "p99": None}


def test_send_changes_only_users_it_registered(fake_api, local_settings):
    from apps.cli.send import send_users

    summary = send_users(fake_api, "k", count=60, rate=200, seed=1)
    registered = {
        r.user_id for r in summary.results if r.operation == "register" and r.status == 202
    }
    changed = {r.user_id for r in summary.results if r.operation != "register"}
    assert changed and changed <= registered


# -- replay, version, help -----------------------------------------------------------------


def test_replay_refuses_event_types_with_the_reason(local_settings, capsys):
    assert main(["replay", "--minutes", "5", "--event-type", "UserDeleted"]) == CONFIG
    assert "cannot be limited to event types" in capsys.readouterr().err


def test_replay_to_one_destination_filters_by_its_rule(crm_queues, sqs, monkeypatch, capsys):
    events = boto3.client("events", region_name="us-east-1")
    bus = events.create_event_bus(Name="datasync-bus")["EventBusArn"]
    archive = events.create_archive(ArchiveName="a", EventSourceArn=bus)["ArchiveArn"]
    buffer_arn = sqs.get_queue_attributes(QueueUrl=crm_queues["buffer"],
                                          AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]  # fmt: skip
    for name, target in (
        ("other", "arn:aws:sqs:us-east-1:123456789012:other"),
        ("crm", buffer_arn),
    ):
        events.put_rule(Name=name, EventBusName="datasync-bus", EventPattern='{"source": ["x"]}')
        events.put_targets(
            Rule=name, EventBusName="datasync-bus", Targets=[{"Id": "1", "Arn": target}]
        )
    crm_rule = events.describe_rule(Name="crm", EventBusName="datasync-bus")["Arn"]
    monkeypatch.setenv("DATASYNC_EVENT_BUS_ARN", bus)
    monkeypatch.setenv("DATASYNC_ARCHIVE_ARN", archive)
    assert main(["replay", "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T01:00:00Z",
                 "--destination", "crm", "--timeout", "30"]) == 0  # fmt: skip
    shown = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert (shown["state"], shown["filter_arns"]) == ("COMPLETED", [crm_rule])
    replay = events.describe_replay(ReplayName=shown["replay"])
    assert replay["Destination"]["FilterArns"] == [crm_rule]


def test_replay_times_need_a_zone(local_settings, capsys):
    with pytest.raises(SystemExit) as usage:
        main(["replay", "--from", "2026-01-01T00:00:00"])
    assert usage.value.code == USAGE and "no zone" in capsys.readouterr().err


def test_version_is_the_package_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert (
        done.value.code == 0
        and capsys.readouterr().out.strip() == f"datasync {version('datasync')}"
    )


@pytest.mark.parametrize("command", [["status"], ["get"], ["trace"], ["dlq", "list"],
                                     ["dlq", "redrive"], ["dlq", "purge"], ["replay"], ["send"],
                                     ["logs"], ["up"], ["schemas"], ["package-lambda"]])  # fmt: skip
def test_every_command_help_has_examples(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0 and "examples:\n  datasync" in capsys.readouterr().out


def test_the_dev_stack_adds_its_commands_through_the_entry_point(monkeypatch, capsys):
    """The operator CLI imports no dev stack: `up` exists only where devstack/ is installed."""
    from importlib.metadata import entry_points

    import apps.cli.main

    groups = {e.value for e in entry_points(group=apps.cli.main.COMMAND_GROUP)}
    assert groups == {"devstack.commands:register"}  # devstack/pyproject.toml, in .venv
    monkeypatch.setattr(apps.cli.main, "entry_points", lambda group: [])  # an image's install
    with pytest.raises(SystemExit) as usage:
        main(["up"])
    assert usage.value.code == USAGE and "invalid choice: 'up'" in capsys.readouterr().err
    assert main(["schemas"]) == 0  # every operator command is still there


def test_a_port_setting_that_is_no_port_is_a_config_error_that_names_it(monkeypatch, capsys):
    monkeypatch.setenv("API_PORT", "80a")
    assert main(["logs"]) == CONFIG
    assert "invalid settings: API_PORT: Input should be a valid integer" in capsys.readouterr().err
