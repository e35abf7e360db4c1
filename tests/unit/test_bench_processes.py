"""bench/processes.py: which kind a process is, what /proc says of the machine and memory;
devstack/processes.py: what /proc says of one process."""

import pytest

from bench.monitor import Monitor
from bench.processes import (
    busy_between,
    classify_cmdline,
    parse_hwm_kib,
    parse_machine_cpu,
)
from devstack.processes import CLOCK_TICKS, alive, children_of, parse_stat, read_stat


def test_stat_parsing_survives_spaces_and_parentheses_in_the_command_name():
    fields = ["S", "7", "42", "42", "0", "-1", "4194560", "100", "0", "0", "0", "250", "50"]
    stat = parse_stat(f"1234 (python (worker) 1) {' '.join(fields)} 0 0 20 0 1 0 100 5")
    assert (stat.pid, stat.state, stat.ppid, stat.pgid) == (1234, "S", 7, 42)
    assert stat.cpu_seconds == pytest.approx(300 / CLOCK_TICKS)
    assert stat.start_time == 100  # field 22


def test_this_process_as_proc_reads_it():
    import os
    import subprocess
    import sys

    me = read_stat(os.getpid())
    assert me is not None and (me.ppid, me.pgid) == (os.getppid(), os.getpgid(0))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in children_of(os.getpid()) and alive(child.pid)
    finally:
        child.kill()
    child.wait()
    assert not alive(child.pid) and read_stat(child.pid) is None


def test_machine_cpu_counts_idle_and_iowait_as_not_busy_and_guest_time_once():
    # /proc/stat of a 2-core machine: user nice system idle iowait irq softirq steal guest guest_nice
    text = "cpu  1000 20 300 5000 100 0 30 0 400 0\ncpu0 500 10 150 2500 50 0 15 0 200 0\n"
    busy, total = parse_machine_cpu(text)
    assert busy == pytest.approx((1000 + 20 + 300 + 30) / CLOCK_TICKS)
    assert total == pytest.approx((1000 + 20 + 300 + 5000 + 100 + 30) / CLOCK_TICKS)
    with pytest.raises(ValueError):
        parse_machine_cpu("cpu0 1 2 3 4\n")


def test_the_machines_busy_cpu_is_interpolated_to_the_exact_window():
    readings = [(100.0, 10.0), (101.0, 11.5), (102.0, 13.5)]
    # 10.75 busy-seconds at 100.5 (half of the first step), 12.5 at 101.5 (half of the second)
    assert busy_between(readings, 100.5, 101.5) == pytest.approx(1.75)
    assert busy_between(readings, 100.0, 102.0) == pytest.approx(3.5)
    assert busy_between(readings, 99.0, 101.0) is None  # before the first reading
    assert busy_between(readings, 101.0, 102.5) is None  # after the last one
    assert busy_between(readings[:1], 100.0, 100.0) is None


def test_a_phase_has_its_exact_machine_cpu_and_the_whole_samples_it_overlaps_per_kind():
    monitor = Monitor(stack=None, stores=None, sqs=None, sampler=None, progress=False)
    monitor.samples = [
        {"t": 100.0, "interval": 1.0, "cpu_seconds": {"api": 0.1}},
        {"t": 101.0, "interval": 1.0, "cpu_seconds": {"api": 0.5}},
        {"t": 102.0, "interval": 1.0, "cpu_seconds": {"api": 0.3}},
        {"t": 104.0, "interval": 1.0, "cpu_seconds": {"api": 0.9}},
    ]
    # Busy on both cores during the burst (100.5-101.5), idle around it.
    monitor.machine = [(100.0, 50.0), (100.5, 50.1), (101.5, 52.1), (102.0, 52.15)]
    cpu = monitor.phase_cpu(100.5, 101.5, events=400)
    assert cpu == {
        "seconds": 2.0,
        "cores_busy": 2.0,
        "machine_ms_per_event": 5.0,
        "ms_per_event": {"api": 2.0},
    }
    monitor.machine = monitor.machine[1:2]  # the reader had not started yet
    assert monitor.phase_cpu(100.5, 101.5, events=400)["cores_busy"] is None


def test_peak_rss_comes_from_vmhwm_and_kernel_threads_have_none():
    assert (
        parse_hwm_kib(
            "Name:\tpython\nVmPeak:\t  900000 kB\nVmHWM:\t   58804 kB\nVmRSS:\t 50000 kB\n"
        )
        == 58804
    )
    assert parse_hwm_kib("Name:\tkworker/0:1\nState:\tI (idle)\n") is None


@pytest.mark.parametrize(
    ("argv", "kind"),
    [
        (["/w/.tools/ministack/bin/python", "/w/.tools/ministack/bin/ministack"], "ministack"),
        (
            [
                "/w/.tools/ministack/bin/python",
                "/w/devstack/ministack_main.py",
                "--esm-max-batch",
                "10000",
            ],
            "ministack",
        ),
        (
            [
                "/w/.tools/ministack/bin/python",
                "/tmp/ministack-lambda-datasync-crm-transform-g8ew0gk1/_worker.py",
            ],
            "lambda_workers",
        ),
        (
            [
                "/w/.venv/bin/python",
                "/w/.venv/bin/gunicorn",
                "--config",
                "python:apps.api.gunicorn_conf",
                "apps.api.wsgi:app",
            ],
            "api",
        ),
        (
            ["/w/.venv/bin/python", "/w/.venv/bin/datasync-consumer", "--destination", "crm"],
            "consumers",
        ),
        (["/w/.venv/bin/python", "/w/.venv/bin/datasync", "up"], None),
    ],
)
def test_process_kinds_from_real_command_lines(argv, kind):
    assert classify_cmdline(argv) == kind
