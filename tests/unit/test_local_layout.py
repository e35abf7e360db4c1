"""datasync/local_layout.py: the local stack's files, written and read in one place."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from datasync.local_layout import (
    CHECKOUT,
    Layout,
    Started,
    api_ready,
    as_shipped_line,
    destinations_in,
    emulator_batch_limit,
    emulator_patch_line,
    free_port,
    lifted_line,
    queue_setting_name,
    read_env_file,
    read_process_file,
    wait_until_ready,
    write_env_file,
    write_process_file,
)


def test_the_layout_from_the_environment_and_back(tmp_path, monkeypatch):
    from devstack.settings import stack_settings  # it reads what environment() writes

    layout = Layout(tmp_path, api_port=8999, emulator_port=4999, emulator_host="0.0.0.0")
    for name, value in layout.environment().items():
        monkeypatch.setenv(name, value)
    assert stack_settings().layout == layout
    for name in layout.environment():
        monkeypatch.delenv(name)
    assert stack_settings().layout == Layout(CHECKOUT / "var")
    assert layout.env_file == tmp_path / "local" / "datasync.env"
    assert layout.emulator_log == tmp_path / "local" / "logs" / "ministack.log"
    assert Layout.of_env_file(layout.env_file).emulator_log == layout.emulator_log
    assert layout.api_url == "http://127.0.0.1:8999"


@pytest.mark.parametrize("port", ["0", "65536", "80a", "²"])
def test_a_port_that_is_not_one_is_refused_with_its_name(port, monkeypatch):
    from datasync.settings import ConfigError
    from devstack.settings import stack_settings

    monkeypatch.setenv("API_PORT", port)
    with pytest.raises(ConfigError, match="invalid settings: API_PORT: "):
        stack_settings()


def test_two_layouts_on_free_ports_do_not_collide(tmp_path):
    first, second = Layout.on_free_ports(tmp_path / "a"), Layout.on_free_ports(tmp_path / "b")
    assert len({first.api_port, first.emulator_port, second.api_port, second.emulator_port}) >= 3


def test_the_env_file_reads_back_what_was_written_and_names_its_destinations(tmp_path):
    values = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
        queue_setting_name("crm"): "http://127.0.0.1:4566/000000000000/datasync-crm",
        queue_setting_name("analytics", "buffer_queue"): "http://h/000000000000/a-buffer",
        queue_setting_name("analytics"): "http://h/000000000000/a",
        queue_setting_name("analytics", "dlq"): "http://h/000000000000/a-dlq",
        "DATASYNC_INTAKE_QUEUE_URL": "http://h/000000000000/intake",
        "DATASYNC_CONSUMER_METRICS_URLS": "crm=http://127.0.0.1:1/metrics",
    }
    path = write_env_file(tmp_path / "local" / "datasync.env", values)
    assert path.read_text().startswith("# Written by `datasync up`")
    assert read_env_file(path) == values
    assert destinations_in(values) == ["analytics", "crm"]


def test_a_hand_edited_env_file_reads_as_a_shell_would(tmp_path):
    path = tmp_path / "datasync.env"
    path.write_text("# mine\n\nexport A='x y'\nB=\"z\"\nC=plain=with=equals\nnot a setting\n")
    assert read_env_file(path) == {"A": "x y", "B": "z", "C": "plain=with=equals"}


def test_the_process_file_reads_back_what_was_written_and_older_files_too(tmp_path):
    path = tmp_path / "processes.json"
    started = [Started("api", 21, 5), Started("emulator", 22, None)]
    write_process_file(path, started)
    assert read_process_file(path) == started
    path.write_text(json.dumps({"process_groups": [11, 12]}))  # checkouts before 2026-12
    assert [entry.pid for entry in read_process_file(path)] == [11, 12]
    path.write_text('{"processes": [')  # a half-written file from elsewhere
    assert read_process_file(path) == []
    assert read_process_file(tmp_path / "missing.json") == []


class _Api(BaseHTTPRequestHandler):
    ready = False

    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200 if self.path == "/readyz" and _Api.ready else 503)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Api.ready = False
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_wait_ends_when_the_api_is_ready_and_not_before(api):
    checks = []

    def becomes_ready_on_the_third_check():
        checks.append(1)
        _Api.ready = len(checks) >= 3

    assert not api_ready(api)  # 503: not ready
    wait_until_ready(api, 10, check=becomes_ready_on_the_third_check, interval=0.01)
    assert len(checks) == 3 and api_ready(api)


def test_the_wait_gives_up_when_told_or_after_its_timeout(api):
    with pytest.raises(TimeoutError, match="not ready"):
        wait_until_ready(api, 0.2, interval=0.05)

    def exited():
        raise RuntimeError("the stack exited")

    with pytest.raises(RuntimeError, match="exited"):
        wait_until_ready(api, 10, check=exited)
    assert not api_ready(f"http://127.0.0.1:{free_port()}")  # nothing listens: not ready


def test_the_emulators_batch_limit_is_read_from_its_log(tmp_path):
    log = tmp_path / "ministack.log"
    assert emulator_batch_limit(log) is None  # no MiniStack of ours: someone else's emulator
    log.write_text("INFO started\n")  # an older checkout: MiniStack started as shipped
    assert emulator_batch_limit(log) == 10 and emulator_patch_line(log) is None
    log.write_text(f"{lifted_line(10)}\n{lifted_line(10000)}\n")
    assert emulator_batch_limit(log) == 10000  # the last start's
    with log.open("a") as out:
        out.write(as_shipped_line("MiniStack 1.6.0 is not the version this patch knows") + "\n")
    assert emulator_batch_limit(log) == 10
    assert "1.6.0" in (emulator_patch_line(log) or "")


def test_older_checkouts_lines_are_read_too(tmp_path):
    """The benchmark measures older checkouts (BENCH_REPO), whose entry point worded it so."""
    log = tmp_path / "ministack.log"
    log.write_text(
        "datasync: event source mappings take up to 10000 messages per batch (MiniStack: 10)\n"
    )
    assert emulator_batch_limit(log) == 10000
    with log.open("a") as out:
        out.write("datasync: MiniStack's event source mapping receive is not the one this patch")
        out.write(" knows (another MiniStack version?): left as shipped, at most 10 per batch\n")
    assert emulator_batch_limit(log) == 10


def test_an_empty_log_says_nothing_and_is_read_as_shipped(tmp_path: Path):
    log = tmp_path / "ministack.log"
    log.write_text("")
    assert emulator_batch_limit(log) == 10
