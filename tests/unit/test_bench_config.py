"""bench/config.py: the accounting pass's second window follows the throughput target's rate."""

import pytest

from bench.config import parse


@pytest.fixture(autouse=True)
def no_bench_environment(monkeypatch):
    monkeypatch.delenv("BENCH_ACCOUNTING_BUS_RATE", raising=False)
    monkeypatch.delenv("BENCH_SUSTAINED_RATE", raising=False)


def test_the_bus_window_runs_at_the_sustained_rate_unless_told():
    assert parse([]).accounting_bus_rate == 500
    assert parse(["--sustained-rate", "300"]).accounting_bus_rate == 300
    assert parse(["--accounting-bus-rate", "250"]).accounting_bus_rate == 250
    assert parse(["--accounting-bus-rate", "0"]).accounting_bus_rate == 0  # skipped


def test_the_environment_sets_it_too(monkeypatch):
    monkeypatch.setenv("BENCH_ACCOUNTING_BUS_RATE", "0")
    assert parse([]).accounting_bus_rate == 0
