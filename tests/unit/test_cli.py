import json
import uuid

import pytest

from apps.cli.main import EXIT_CONFIG, EXIT_NOT_FOUND, EXIT_UNAVAILABLE, main
from datasync.core.stores import open_store
from tests.builders import record


@pytest.fixture
def local_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("DATASYNC_ENV_FILE", str(tmp_path / "missing.env"))
    monkeypatch.setenv("DATASYNC_STORE_DIR", str(tmp_path / "stores"))
    monkeypatch.setenv("DATASYNC_ANALYTICS_HASH_KEY", "0123456789abcdef")
    for name in ("DATABASE_URL", "DATASYNC_CRM_QUEUE_URL", "DATASYNC_CRM_DLQ_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "stores"


def test_get_prints_the_record_as_json(local_settings, capsys):
    user_id = str(uuid.uuid4())
    store = open_store("crm", store_dir=local_settings)
    store.apply([record(key=user_id, at=1, name="Ada")])
    store.close()
    assert main(["get", "crm", user_id]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "Ada"


def test_get_exits_3_with_a_message_when_absent(local_settings, capsys):
    assert main(["get", "marketing", str(uuid.uuid4())]) == EXIT_NOT_FOUND
    assert "no marketing record" in capsys.readouterr().err


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
