"""`datasync up` (what `make run` runs) as a user runs it: signals, crashes, restarts.

Every test drives the real supervisor as a subprocess on free ports with a var dir of its own
and reads only what a user sees: its output, processes.json, the ports, the API, the stores.
The module pays for one fresh start (terraform apply, ~80-120 s); every later start is a
restart of the emulator state that start saved, which must be up in <= 20 s.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from datasync.contract import DESTINATIONS
from datasync.local_layout import Layout, api_ready, read_process_file
from datasync.settings import LOCAL_ANALYTICS_HASH_KEY, LOCAL_API_KEY
from devstack.emulator import is_healthy, port_in_use
from devstack.paths import ROOT, venv_bin
from devstack.processes import alive, group_members, read_cmdline
from devstack.settings import stack_settings
from tests.pipeline import wait_until
from tests.reconcile import Ledger, LoadClient, StoreReader, Workload, wait_until_settled

pytestmark = pytest.mark.integration

STOP_BOUND_SECONDS = 30
RESTART_BOUND_SECONDS = 20
RESTARTED_WITHIN_SECONDS = 5
FIRST_START_TIMEOUT = 360
STRAY_QUEUE = "left-over-from-an-earlier-life"


@dataclass
class Run:
    """One `datasync up` (or `make run`) in a session of its own, output to a file."""

    stack: LocalRun
    via_make: bool = False
    process: subprocess.Popen[bytes] = field(init=False)
    started: float = field(init=False)
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.stack.runs += 1
        self.log = self.stack.var_dir / f"run-{self.stack.runs}.out"
        command = [venv_bin("datasync"), "up"]
        if self.via_make:
            # -o: never reinstall the environments from inside a test (a newer pyproject.toml
            # would make make do it), just run what `make run` runs.
            command = ["make", "--no-print-directory", "-o", ".venv/.installed",
                       "-o", ".tools/ministack/.installed", "run"]  # fmt: skip
        self.started = time.monotonic()
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(  # a terminal's job: its own process group
                command, cwd=ROOT, env=self.stack.env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float) -> float:
        """Seconds since the start until ``text`` appeared in the output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output:
                return time.monotonic() - self.started
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {text!r} in the output of `datasync up`:\n{self.output[-3000:]}")

    def wait_until_up(self, timeout: float = FIRST_START_TIMEOUT) -> float:
        return self.wait_for("datasync: up in", timeout)

    def children(self) -> dict[str, int]:
        """name -> pid, as processes.json says now."""
        return {
            child.name: child.pid for child in read_process_file(self.stack.layout.process_file)
        }

    def every_pid(self) -> set[int]:
        """The supervisor (make too) and every process of its children's groups."""
        pids = {self.process.pid, *group_members(self.process.pid)}
        for pid in self.children().values():
            pids |= {pid, *group_members(pid)}
        return pids

    def stop_and_measure(self, sig: int, *, group: bool, twice: bool = False) -> float:
        """Send ``sig``; seconds until every process is gone and no port listens."""
        pids = self.every_pid()
        sent = time.monotonic()
        for _ in range(2 if twice else 1):
            if group:
                os.killpg(self.process.pid, sig)
            else:
                self.process.send_signal(sig)
        self.process.wait(STOP_BOUND_SECONDS + 30)
        return self.stack.wait_until_gone(pids, since=sent)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@dataclass
class LocalRun:
    layout: Layout
    env: dict[str, str]
    runs: int = 0
    figures: dict[str, Any] = field(default_factory=dict)
    first_output: str = ""
    interrupted_output: str = ""
    stray_queues: list[str] = field(default_factory=list)

    @property
    def var_dir(self) -> Path:
        return self.layout.var_dir

    @property
    def api_url(self) -> str:
        return self.layout.api_url

    def ports_listening(self) -> list[int]:
        ports = (self.layout.emulator_port, self.layout.api_port)
        return [p for p in ports if port_in_use("127.0.0.1", p)]

    def wait_until_gone(self, pids: set[int], since: float) -> float:
        deadline = since + STOP_BOUND_SECONDS
        while time.monotonic() < deadline:
            running = {p for p in pids if alive(p)}
            if not running and not self.ports_listening():
                return time.monotonic() - since
            time.sleep(0.1)
        running = sorted(p for p in pids if alive(p))
        raise AssertionError(
            f"{STOP_BOUND_SECONDS}s after the signal: alive {_describe(running)}, "
            f"listening {self.ports_listening()}"
        )

    def reader(self) -> StoreReader:
        return StoreReader(
            store_dir=self.layout.store_dir, analytics_hash_key=LOCAL_ANALYTICS_HASH_KEY.encode()
        )

    def restart(self, **kwargs) -> Run:
        run = Run(self, **kwargs)
        try:
            seconds = run.wait_until_up(timeout=120)
        except BaseException:
            run.kill()
            raise
        self.figures.setdefault("restarts", []).append(round(seconds, 1))
        return run


def _describe(pids: list[int]) -> str:
    return ", ".join(f"{pid} {' '.join(read_cmdline(pid))[:80]!r}" for pid in pids) or "nothing"


def _child_env(layout: Layout) -> dict[str, str]:
    # A user's shell: none of the session's AWS_/DATASYNC_ settings (other stacks' queue URLs).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DATASYNC_"))}
    mirror = stack_settings().terraform_mirror
    if mirror:
        env["DATASYNC_TERRAFORM_MIRROR"] = str(mirror)
    return env | layout.environment() | {"PYTHONUNBUFFERED": "1"}


def _seed_an_earlier_life(stack: LocalRun) -> None:
    """State a user could have from before: a saved emulator with a stray queue, an old store."""
    state = stack.layout.emulator_state_dir
    ministack = stack_settings().ministack_executable
    env = {
        "PATH": os.environ["PATH"], "GATEWAY_PORT": str(stack.layout.emulator_port),
        "BIND_HOST": "127.0.0.1", "PERSIST_STATE": "1", "STATE_DIR": str(state),
    }  # fmt: skip
    emulator = subprocess.Popen([str(ministack)], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.STDOUT)  # fmt: skip
    try:
        url = stack.layout.emulator_url
        wait_until(lambda: is_healthy(url), timeout=30, what="the seeding MiniStack")
        _sqs(url).create_queue(QueueName=STRAY_QUEUE)
    finally:
        emulator.send_signal(signal.SIGTERM)
        emulator.wait(15)
    assert (state / "sqs.json").exists()
    terraform = stack.layout.terraform_dir
    terraform.mkdir(parents=True)
    (terraform / "applied.json").write_text('{"fingerprint": "an older one", "outputs": {}}')
    stores = stack.layout.store_dir
    stores.mkdir()
    with sqlite3.connect(stores / "crm.sqlite3") as db:
        db.execute("CREATE TABLE datasync_crm_applied_events (event_id TEXT, applied_at TEXT)")
        db.execute("INSERT INTO datasync_crm_applied_events VALUES ('stale-event', 'then')")


def _sqs(url: str):
    import boto3

    return boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    ).client("sqs", endpoint_url=url)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """A var dir whose first `datasync up` (after `make clean-state`) applied Terraform."""
    layout = Layout.on_free_ports(tmp_path_factory.mktemp("local-run"))
    stack = LocalRun(layout, _child_env(layout))
    _seed_an_earlier_life(stack)
    subprocess.run(["make", "--no-print-directory", "clean-state"], cwd=ROOT, env=stack.env,
                   check=True, capture_output=True)  # fmt: skip
    # A stop while Terraform applies: it is interrupted (SIGINT), and the next start knows the
    # apply never finished, so it starts over from an empty emulator.
    interrupted = Run(stack)
    try:
        interrupted.wait_for("applying terraform/", timeout=120)
        interrupted.wait_for(": Creating...", timeout=60)  # resources are being created
        time.sleep(3)
        stack.figures["stop_during_apply"] = interrupted.stop_and_measure(signal.SIGINT, group=True)
        stack.interrupted_output = interrupted.output
    finally:
        interrupted.kill()
    first = Run(stack)
    try:
        stack.figures["first_start"] = first.wait_until_up()
        stack.first_output = first.output
        sqs = _sqs(layout.emulator_url)
        stack.stray_queues = sqs.list_queues(QueueNamePrefix=STRAY_QUEUE).get("QueueUrls", [])
        stack.figures["first_stop"] = first.stop_and_measure(signal.SIGTERM, group=False)
    finally:
        first.kill()
    yield stack
    print(f"\nlocal run figures (2 shared cores, noisy): {stack.figures}")


def test_a_stop_during_the_first_apply_interrupts_terraform_and_the_next_start_starts_over(
    local_run,
):
    assert "stopping: SIGINT received while starting" in local_run.interrupted_output
    assert local_run.figures["stop_during_apply"] <= STOP_BOUND_SECONDS
    assert "no finished Terraform apply to match" in local_run.first_output


def test_clean_state_forgets_everything_and_the_first_start_applies_terraform(local_run):
    out = local_run.first_output
    assert "first apply" in out and "terraform applied" in out
    assert local_run.stray_queues == [], "make clean-state left the old emulator state"
    applied = local_run.reader().applied_event_ids("crm")
    assert "stale-event" not in applied, "make clean-state left the old stores"
    assert local_run.figures["first_stop"] <= STOP_BOUND_SECONDS


@pytest.mark.parametrize(
    ("sig", "group", "via_make"),
    [
        (signal.SIGINT, True, False),  # Ctrl-C in the terminal: the whole foreground group
        (signal.SIGHUP, False, False),  # the terminal closed
        # `kill -TERM -<pgid>` of `make run`: make forwards it, so `datasync up` gets it twice
        (signal.SIGTERM, True, True),
    ],
    ids=["SIGINT-to-group", "SIGHUP-to-process", "SIGTERM-to-make-run-group"],
)
def test_a_stop_signal_stops_every_process_and_frees_every_port(local_run, sig, group, via_make):
    run = local_run.restart(via_make=via_make)
    try:
        assert len(run.children()) == 1 + 1 + len(DESTINATIONS)  # emulator, API, consumers
        seconds = run.stop_and_measure(sig, group=group)
    finally:
        run.kill()
    local_run.figures[f"stop_{signal.Signals(sig).name}"] = round(seconds, 1)
    assert "datasync: stopped in" in run.output
    assert "SIGKILL" not in run.output  # everything stopped when asked, nothing was killed
    assert "state saved in" in run.output


def test_a_sigkilled_supervisor_takes_its_children_along(local_run):
    run = local_run.restart()
    try:
        _post_users(local_run, 3)  # so that MiniStack has Lambda workers too
        emulator = run.children()["emulator"]
        # Live events reach the intake function alone; how many workers its pool grows to
        # depends on how the three invocations overlap, so one is what can be relied on.
        wait_until(lambda: len(group_members(emulator)) > 1, timeout=30,
                   what="a Lambda worker of the intake function")  # fmt: skip
        # MiniStack unpacks each worker into a temp dir it never removes: ours, not /tmp.
        worker_dirs = set(local_run.var_dir.glob("local/emulator-tmp/ministack-lambda-*"))
        assert any("-intake-" in path.name for path in worker_dirs), worker_dirs
        pids = run.every_pid() - {run.process.pid}
        sent = time.monotonic()
        run.process.kill()  # only the supervisor: no cleanup code of ours runs
        run.process.wait(5)
        seconds = local_run.wait_until_gone(pids, since=sent)
    finally:
        run.kill()
    local_run.figures["orphans_gone_after_sigkill"] = round(seconds, 1)
    # The parent-death signal is SIGTERM: MiniStack saved its state, so the next run restarts.
    again = local_run.restart()
    try:
        assert "not running terraform" in again.output
        assert not worker_dirs & set(local_run.var_dir.glob("local/emulator-tmp/*"))
        again.stop_and_measure(signal.SIGTERM, group=False)
    finally:
        again.kill()


def test_crashes_and_a_restart_with_events_queued_lose_and_double_nothing(local_run):
    run = local_run.restart()
    try:
        # 1. crashes while events flow through the API: each crashed child is back within 5 s
        client = LoadClient(local_run.api_url, LOCAL_API_KEY, concurrency=8, rate=60)
        first = _in_background(client, Workload.generate(600, seed=3, run_id=_run_id()))
        time.sleep(2)
        for name in ("consumer-crm", "api"):
            _kill_and_see_it_restarted(run, name)
            time.sleep(2)
        first_ledger = first.result()
        wait_until(lambda: api_ready(local_run.api_url), timeout=RESTARTED_WITHIN_SECONDS)

        # 2. stop with events queued and the consumers hung (SIGSTOP): the stop kills them
        consumers = [pid for name, pid in run.children().items() if name.startswith("consumer")]
        for pid in consumers:
            os.kill(pid, signal.SIGSTOP)
        queued = LoadClient(local_run.api_url, LOCAL_API_KEY, concurrency=8).run(
            Workload.generate(300, seed=4, run_id=_run_id())
        )
        local_run.figures["stop_with_hung_consumers"] = round(
            run.stop_and_measure(signal.SIGTERM, group=False), 1
        )
    finally:
        run.kill()
    for name in ("consumer-crm", "consumer-analytics", "consumer-marketing"):
        assert f"{name} did not stop within 18s: killing it (SIGKILL)" in run.output
    assert "state saved in" in run.output
    ledger = Ledger(acks=first_ledger.acks + queued.acks)
    assert len(queued.acks) == 300 and not queued.gave_up
    reader = local_run.reader()
    queued_ids = {a.event_id for a in queued.acks}
    not_applied = {d: queued_ids - reader.applied_event_ids(d) for d in ("crm", "analytics")}
    assert all(not_applied.values()), f"nothing was left queued at the stop: {not_applied}"

    # 3. the restart brings them back: up in <= 20 s, and every acknowledged event applied once
    again = local_run.restart()
    try:
        restart_seconds = local_run.figures["restarts"][-1]
        assert "not running terraform" in again.output, again.output[-2000:]
        assert restart_seconds <= RESTART_BOUND_SECONDS, f"restart took {restart_seconds}s"
        report = wait_until_settled(reader, ledger, timeout=150, logs_dir=local_run.layout.logs_dir)
        # This test's promise is delivery: nothing lost, nothing applied twice, nothing made
        # up. (Whether out-of-order arrivals merge into the right final state - "stale" - is
        # the stores' promise, proven by test_guarantees; it is printed here, not asserted.)
        print(f"\nreconciled after crashes and a restart:\n{report}")
        assert report.void_reason is None, report.void_reason
        for what in ("lost", "doubled", "unexpected"):
            assert report.count(what) == 0, f"\n{report}"
        again.stop_and_measure(signal.SIGTERM, group=False)
    finally:
        again.kill()


# -- helpers -----------------------------------------------------------------------------------
def _run_id() -> str:
    return uuid.uuid4().hex[:10]


def _post_users(stack: LocalRun, count: int) -> None:
    for i in range(count):
        body = json.dumps({"email": f"sk-{i}@example.com", "name": "Ada", "marketing_opt_in": True})
        request = urllib.request.Request(
            stack.api_url + "/v1/users", data=body.encode(), method="POST",
            headers={"X-API-Key": LOCAL_API_KEY, "Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            assert response.status == 202


def _kill_and_see_it_restarted(run: Run, name: str) -> None:
    old = run.children()[name]
    os.kill(old, signal.SIGKILL)
    killed = time.monotonic()
    line = f"datasync: {name} restarted (pid "
    deadline = killed + RESTARTED_WITHIN_SECONDS
    while line not in run.output and time.monotonic() < deadline:
        time.sleep(0.05)
    assert line in run.output, f"{name} was not restarted within 5 s:\n{run.output[-2000:]}"
    assert f"{name} exited (killed by SIGKILL)" in run.output
    new = wait_until(lambda: run.children()[name] != old and run.children()[name], timeout=2)
    assert alive(new)


class _in_background:  # noqa: N801 - reads like a call
    def __init__(self, client: LoadClient, workload: Workload):
        import threading

        self._ledger: Ledger | None = None
        self._thread = threading.Thread(target=self._run, args=(client, workload), daemon=True)
        self._thread.start()

    def _run(self, client: LoadClient, workload: Workload) -> None:
        self._ledger = client.run(workload)

    def result(self, timeout: float = 120) -> Ledger:
        self._thread.join(timeout)
        assert self._ledger is not None, "the load client did not finish"
        return self._ledger
