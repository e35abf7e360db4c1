"""bench/config.py: the accounting pass's second window follows the throughput target's rate;
a run's files are named after its day, label and commit and never overwrite an earlier run's."""

from datetime import date

import pytest

from bench.config import parse, with_result_file

DAY = date(2026, 12, 5)


@pytest.fixture(autouse=True)
def no_bench_environment(monkeypatch):
    for name in ("BENCH_ACCOUNTING_BUS_RATE", "BENCH_SUSTAINED_RATE", "BENCH_OUT", "BENCH_LABEL"):
        monkeypatch.delenv(name, raising=False)


def test_the_bus_window_runs_at_the_sustained_rate_unless_told():
    assert parse([]).accounting_bus_rate == 500
    assert parse(["--sustained-rate", "300"]).accounting_bus_rate == 300
    assert parse(["--accounting-bus-rate", "250"]).accounting_bus_rate == 250
    assert parse(["--accounting-bus-rate", "0"]).accounting_bus_rate == 0  # skipped


def test_the_environment_sets_it_too(monkeypatch):
    monkeypatch.setenv("BENCH_ACCOUNTING_BUS_RATE", "0")
    assert parse([]).accounting_bus_rate == 0


def test_a_run_is_written_under_var_bench_named_by_day_label_and_commit(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    config = with_result_file(parse([]), "64ea5cf", False, DAY)
    runs = tmp_path / "var" / "bench"
    assert config.result_file == runs / "2026-12-05-run-64ea5cf.json"
    assert config.plot == runs / "2026-12-05-run-64ea5cf.png"
    assert config.summary == runs / "2026-12-05-run-64ea5cf.summary.json"
    labelled = with_result_file(parse(["--label", "intake4"]), "64ea5cf", True, DAY)
    assert labelled.result_file.name == "2026-12-05-intake4-64ea5cf-dirty.json"
    assert with_result_file(parse([]), None, False, DAY).result_file.name == (
        "2026-12-05-run-nocommit.json"
    )


def test_a_second_run_of_the_same_day_and_commit_does_not_overwrite_the_first(
    monkeypatch, tmp_path
):
    monkeypatch.chdir(tmp_path)
    first = with_result_file(parse([]), "64ea5cf", False, DAY)
    first.result_file.parent.mkdir(parents=True)
    first.result_file.write_text("{}")
    second = with_result_file(parse([]), "64ea5cf", False, DAY)
    assert second.result_file.name == "2026-12-05-run-64ea5cf-2.json"
    first.result_file.unlink()
    first.summary.write_text("{}")  # a summary alone still marks the name as taken
    assert with_result_file(parse([]), "64ea5cf", False, DAY).result_file == second.result_file


def test_bench_out_names_the_raw_result_and_the_others_go_beside_it(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_OUT", str(tmp_path / "mine.json"))
    config = with_result_file(parse([]), "64ea5cf", False, DAY)
    assert config.result_file == tmp_path / "mine.json"
    assert (config.plot, config.summary) == (tmp_path / "mine.png", tmp_path / "mine.summary.json")


@pytest.mark.parametrize("label", ["", "../up", "a b", ".hidden"])
def test_a_label_that_cannot_name_a_file_is_refused(label):
    with pytest.raises(SystemExit):
        parse(["--label", label])
