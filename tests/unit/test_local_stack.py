"""The local stack's pieces that need no emulator: children that cannot outlive the supervisor,
cleanup after a hard kill, which state a restart may trust, the ordered stop, and settings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from datasync.local_layout import Layout, Started, as_shipped_line, lifted_line
from datasync.settings import ConfigError, Settings
from devstack.emulator import Emulator
from devstack.local_stack import LocalStack, StackConfig, emulator_as_shipped
from devstack.processes import (
    ProcessFile,
    alive,
    group_alive,
    spawn,
    start_time,
    still_running,
    stop_leftovers,
)
from devstack.settings import StackSettings
from devstack.supervisor import StopLatch, Supervised
from devstack.terraform import TerraformStack, inputs_fingerprint, prepare_workdir
from tests.pipeline import wait_until

# -- children cannot outlive the supervisor --------------------------------------------------
SUPERVISOR = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path
    from devstack.processes import spawn
    # the child writes its pid, then waits; SIGTERM (the parent-death signal) ends it
    child = spawn([sys.executable, "-c", "import time; time.sleep(60)"], log_path=None,
                  death_signal=signal.SIGTERM)
    Path(sys.argv[1]).write_text(str(child.pid))
    time.sleep(60)
    """
)


def test_a_child_dies_with_its_supervisor_even_when_the_supervisor_is_sigkilled(tmp_path):
    pid_file = tmp_path / "child.pid"
    supervisor = subprocess.Popen([sys.executable, "-c", SUPERVISOR, str(pid_file)])
    try:
        child = int(wait_until(lambda: pid_file.exists() and pid_file.read_text(), timeout=10))
        assert alive(child)
        assert os.getpgid(child) == child  # a session of its own: group signals miss it
        supervisor.kill()
        supervisor.wait(5)
        wait_until(lambda: not alive(child), timeout=5, what="the orphan to get SIGTERM")
    finally:
        supervisor.kill()
        if pid_file.exists():
            subprocess.run(["kill", "-KILL", pid_file.read_text()], capture_output=True)


def test_children_run_in_a_session_of_their_own(tmp_path):
    child = spawn(["sleep", "30"], log_path=tmp_path / "sleep.log")
    try:
        assert os.getsid(child.pid) == child.pid != os.getsid(0)
    finally:
        child.kill()
        child.wait()


# -- cleanup after a hard kill ---------------------------------------------------------------
def orphan_group() -> int:
    """An orphaned process group (a parent with a child), like the ones a killed run leaves."""
    launcher = "setsid sh -c 'sleep 60 & sleep 60' > /dev/null 2>&1 & echo $!"
    group = int(
        subprocess.run(["sh", "-c", launcher], capture_output=True, text=True, check=True).stdout
    )
    wait_until(lambda: group_alive(group) and start_time(group), timeout=5, what="the group")
    return group


def test_a_run_after_a_hard_kill_stops_what_the_killed_run_left(tmp_path):
    group = orphan_group()
    process_file = ProcessFile(tmp_path / "processes.json")
    process_file.write([("consumer-crm", group), ("api", 999_999_999)])
    lines = []

    started = time.monotonic()
    stop_leftovers(process_file, lines.append)

    assert not group_alive(group)
    assert time.monotonic() - started < 5  # stopped by SIGTERM, no need for the SIGKILL round
    assert not process_file.path.exists()
    assert lines == [
        "stopping what an earlier run (killed before it could clean up) left: consumer-crm"
    ]


def test_a_pid_reused_by_another_program_is_left_alone(tmp_path):
    group = orphan_group()
    try:
        process_file = ProcessFile(tmp_path / "processes.json")
        wrong_start = start_time(group) - 1  # the recorded process started at another time
        process_file.path.write_text(
            json.dumps({"processes": [{"name": "api", "pid": group, "start_time": wrong_start}]})
        )
        stop_leftovers(process_file, print)
        assert group_alive(group)
    finally:
        os.killpg(group, signal.SIGKILL)


def test_nothing_to_do_without_a_process_file(tmp_path):
    stop_leftovers(ProcessFile(tmp_path / "missing.json"), print)
    assert still_running(Started("x", 999_999_999, None)) is False


# -- which saved state a restart may trust ---------------------------------------------------
def stack_with_state(tmp_path, *, emulator_state: bool, applied: bool) -> LocalStack:
    config = StackConfig(Layout(tmp_path))
    config.layout.emulator_state_dir.mkdir(parents=True)
    config.layout.terraform_dir.mkdir(parents=True)
    if emulator_state:
        (config.layout.emulator_state_dir / "sqs.json").write_text("{}")
    (config.layout.terraform_dir / "terraform.tfstate").write_text("{}")
    if applied:
        (config.layout.terraform_dir / "applied.json").write_text(
            '{"fingerprint": "x", "outputs": {}}'
        )
    return LocalStack(config)


def test_both_states_are_kept_when_they_belong_together(tmp_path):
    stack = stack_with_state(tmp_path, emulator_state=True, applied=True)
    stack._reconcile_saved_state()
    assert (stack.config.layout.emulator_state_dir / "sqs.json").exists()
    assert (stack.config.layout.terraform_dir / "terraform.tfstate").exists()


def test_an_emulator_that_saved_nothing_makes_terraform_start_over(tmp_path, capsys):
    stack = stack_with_state(tmp_path, emulator_state=False, applied=True)
    stack._reconcile_saved_state()
    assert not (stack.config.layout.terraform_dir / "terraform.tfstate").exists()
    assert not (stack.config.layout.terraform_dir / "applied.json").exists()
    assert "saved no state last time" in capsys.readouterr().out


def test_an_apply_that_never_finished_makes_both_start_over(tmp_path, capsys):
    stack = stack_with_state(tmp_path, emulator_state=True, applied=False)
    stack._reconcile_saved_state()
    assert not stack.config.layout.emulator_state_dir.exists()
    assert not (stack.config.layout.terraform_dir / "terraform.tfstate").exists()
    assert "no finished Terraform apply" in capsys.readouterr().out


def test_fresh_stops_leftovers_then_forgets_every_kind_of_state(tmp_path, capsys):
    stack = stack_with_state(tmp_path, emulator_state=True, applied=True)
    stack.config.layout.store_dir.mkdir(parents=True)
    (stack.config.layout.store_dir / "crm.sqlite3").write_text("")
    leftover = spawn(["sleep", "60"], log_path=None)
    ProcessFile(stack.config.layout.process_file).write([("consumer-crm", leftover.pid)])
    try:
        stack.clear_the_way(fresh=True)
        assert leftover.wait(10) is not None  # stopped before its pid file was forgotten
    finally:
        leftover.kill()
    for gone in (stack.config.layout.emulator_state_dir, stack.config.layout.terraform_dir,
                 stack.config.layout.store_dir):  # fmt: skip
        assert not gone.exists(), gone
    assert stack.config.layout.logs_dir.is_dir()  # ready for the run that follows


def test_without_fresh_a_restart_keeps_its_state(tmp_path):
    stack = stack_with_state(tmp_path, emulator_state=True, applied=True)
    stack.clear_the_way(fresh=False)
    assert (stack.config.layout.emulator_state_dir / "sqs.json").exists()
    assert (stack.config.layout.terraform_dir / "applied.json").exists()


def test_the_fingerprint_changes_with_the_configuration_and_the_variables(tmp_path):
    workdir = prepare_workdir(tmp_path / "tf", "http://127.0.0.1:4999")
    variables = {"lambda_package_path": "/b/lambda-local-aaaa.zip", "create_alarms": "true"}
    same = inputs_fingerprint(workdir, variables)
    assert inputs_fingerprint(prepare_workdir(workdir, "http://127.0.0.1:4999"), variables) == same
    assert inputs_fingerprint(workdir, {**variables, "lambda_package_path": "/b/x.zip"}) != same
    module = workdir / "modules" / "destination" / "main.tf"
    module.write_text(module.read_text() + "# changed\n")
    assert inputs_fingerprint(workdir, variables) != same


def test_prepare_workdir_keeps_terraform_state(tmp_path):
    workdir = prepare_workdir(tmp_path / "tf", None)
    (workdir / "terraform.tfstate").write_text('{"version": 4}')
    prepare_workdir(workdir, "http://127.0.0.1:4999")
    assert (workdir / "terraform.tfstate").read_text() == '{"version": 4}'


class FakeTerraform:
    """A Terraform process that only stops when interrupted."""

    def __init__(self):
        self.returncode = None
        self.signals = []

    def poll(self):
        return self.returncode

    def send_signal(self, sig):
        self.signals.append(sig)
        self.returncode = 1

    def wait(self, timeout=None):
        return self.returncode


def test_a_stop_request_interrupts_terraform_gracefully():
    latch = StopLatch()
    latch.record(signal.SIGTERM)
    process = FakeTerraform()
    assert TerraformStack._wait(process, latch) is None  # type: ignore[arg-type]
    assert process.signals == [signal.SIGINT]  # Terraform's graceful stop, not SIGKILL


# -- the ordered stop, with real processes standing in for the apps and the emulator ----------
APP = textwrap.dedent(
    """
    import signal, sys, time
    def stop(*_):
        time.sleep(float(sys.argv[2]))  # "finishing the batch in hand"
        open(sys.argv[1], "a").write(f"{sys.argv[3]} {time.monotonic()}\\n")
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    while True:
        time.sleep(0.05)
    """
)
EMULATOR = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path
    def stop(*_):
        Path(sys.argv[2], "sqs.json").write_text("{}")  # saving its state
        open(sys.argv[1], "a").write(f"emulator {time.monotonic()}\\n")
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    while True:
        time.sleep(0.05)
    """
)


def test_the_stop_takes_the_apps_down_first_then_lets_the_emulator_save(tmp_path, capsys):
    config = StackConfig(Layout(tmp_path))
    config.layout.logs_dir.mkdir(parents=True)
    config.layout.emulator_state_dir.mkdir(parents=True)
    order = tmp_path / "order.log"
    stack = LocalStack(config)
    for name, seconds in (("api", "0.1"), ("consumer-crm", "0.6"), ("consumer-marketing", "0.3")):
        command = [sys.executable, "-c", APP, str(order), seconds, name]
        app = Supervised(name, lambda c=command: spawn(c, log_path=None), print)
        app.launch()
        stack.apps[name] = app
    emulator = spawn(
        [sys.executable, "-c", EMULATOR, str(order), str(config.layout.emulator_state_dir)],
        log_path=None,
    )
    stack.emulator = Emulator("http://127.0.0.1:1", emulator, config.layout.emulator_state_dir)
    time.sleep(0.3)  # let the children install their handlers

    stack.stop()

    stopped = [line.split()[0] for line in order.read_text().splitlines()]
    assert stopped == ["api", "consumer-marketing", "consumer-crm", "emulator"]
    out = capsys.readouterr().out
    assert "state saved in" in out and "WITHOUT" not in out and "SIGKILL" not in out
    assert all(a.poll() is not None for a in (emulator,))
    assert stack.apps == {}


# -- settings --------------------------------------------------------------------------------
def test_the_stack_reads_its_settings_through_one_class(monkeypatch, tmp_path):
    monkeypatch.setenv("DATASYNC_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("DATASYNC_EMULATOR_PORT", "4999")
    monkeypatch.setenv("API_PORT", "8999")
    monkeypatch.setenv("DATASYNC_CONSUMER_CONCURRENCY", "2")
    monkeypatch.setenv("DATASYNC_AWS_ENDPOINT_URL", "")
    monkeypatch.delenv("DATASYNC_RECEIVE_WAIT_SECONDS", raising=False)
    config = StackConfig.from_environment()
    assert config.layout == Layout(tmp_path, api_port=8999, emulator_port=4999)
    assert config.consumer_concurrency == 2 and config.external_endpoint is None
    assert config.receive_wait_seconds == 5  # local consumers stop within 5 s of SIGTERM
    assert config.lambda_concurrency == 3  # not MiniStack's 5 batches (processes) per mapping
    assert config.intake_concurrency == 4
    monkeypatch.setenv("DATASYNC_LAMBDA_CONCURRENCY", "2")
    monkeypatch.setenv("DATASYNC_INTAKE_CONCURRENCY", "6")
    stack = LocalStack(StackConfig.from_environment())
    variables = stack.terraform_variables(Path("/b/lambda-local-aaaa.zip"))
    assert variables["lambda_maximum_concurrency"] == "2"
    assert variables["intake_maximum_concurrency"] == "6"
    assert variables["lambda_package_path"] == "/b/lambda-local-aaaa.zip"
    monkeypatch.setenv("DATASYNC_EMULATOR_PORT", "99999")
    with pytest.raises(ConfigError, match="DATASYNC_EMULATOR_PORT"):
        StackConfig.from_environment()


@pytest.mark.parametrize(("given", "local"), [(None, 5), ("20", 20), ("0", 0), ("7", 7)])
def test_the_consumers_long_poll_has_one_default_and_make_run_shortens_it(
    monkeypatch, given, local
):
    """The apps' DATASYNC_RECEIVE_WAIT_SECONDS defaults to 20 s (rare billed empty receives);
    `make run` gives its consumers 5 s for quick stops unless the variable is set, even to 20."""
    monkeypatch.delenv("DATASYNC_RECEIVE_WAIT_SECONDS", raising=False)
    assert Settings().receive_wait_seconds == 20
    if given is not None:
        monkeypatch.setenv("DATASYNC_RECEIVE_WAIT_SECONDS", given)
    assert StackConfig.from_environment().receive_wait_seconds == local
    assert "receive_wait_seconds" not in StackSettings.model_fields  # read by the apps' only


def test_make_runs_own_lines_are_json_lines_like_every_runtimes(tmp_path, capsys):
    from devstack.local_stack import UP_LOG, keep_json_log, say

    log = tmp_path / "logs" / "up.log"
    keep_json_log(log)
    try:
        say("consumer-crm exited with code -9; restarting in 0.6s")
    finally:
        for handler in UP_LOG.handlers:
            handler.close()
        UP_LOG.handlers.clear()
    assert (
        capsys.readouterr().out
        == "datasync: consumer-crm exited with code -9; restarting in 0.6s\n"
    )
    [line] = [json.loads(text) for text in log.read_text().splitlines()]
    assert line["service"] == "datasync-up" and line["logger"] == "datasync.up"
    assert line["message"] == "consumer-crm exited with code -9; restarting in 0.6s"
    assert {"time", "level"} <= set(line)


# -- the emulator's batch limit, as the banner says it ---------------------------------------
def test_the_banner_says_when_ministack_runs_as_shipped(tmp_path):
    stack = LocalStack(StackConfig(Layout(tmp_path)))
    stack.emulator = Emulator("http://127.0.0.1:4566")
    stack.outputs = {"event_bus_name": "bus", "queue_urls": {}}
    log = stack.config.layout.emulator_log
    log.parent.mkdir(parents=True)
    log.write_text(lifted_line(10_000) + "\n")
    assert emulator_as_shipped(log) is None
    assert "as shipped" not in stack.summary()

    with log.open("a") as out:  # the next start, with another MiniStack
        out.write(as_shipped_line("MiniStack 1.6.0 is not 1.5.33") + "\n")
    stack.emulator_as_shipped = emulator_as_shipped(log)
    assert "MiniStack 1.6.0 is not 1.5.33" in (stack.emulator_as_shipped or "")
    assert "http://127.0.0.1:4566   (MiniStack as shipped: at most 10" in stack.summary()
