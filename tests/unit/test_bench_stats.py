"""bench/stats.py: the percentiles and per-second counts the result is built from."""

import pytest

from bench.stats import per_second, percentile, summary_ms


def test_percentile_interpolates_between_closest_ranks():
    values = [10, 20, 30, 40]  # ranks 0..3
    assert percentile(values, 0) == 10
    assert percentile(values, 50) == 25  # rank 1.5
    assert percentile(values, 100) == 40
    assert percentile(values, 90) == pytest.approx(37)  # rank 2.7


def test_percentile_does_not_depend_on_input_order():
    assert percentile([40, 10, 30, 20], 50) == 25


def test_percentile_of_nothing_is_none_and_out_of_range_is_an_error():
    assert percentile([], 99) is None
    with pytest.raises(ValueError, match="0..100"):
        percentile([1.0], 101)


def test_summary_is_in_milliseconds_and_sees_the_tail():
    seconds = [0.010] * 98 + [0.500, 2.000]  # two slow requests in a hundred
    summary = summary_ms(seconds)
    assert summary["p50"] == 10.0
    assert summary["p95"] == 10.0
    assert summary["p99"] == pytest.approx(515.0)  # rank 98.01: between 500 ms and 2 s
    assert summary["max"] == 2000.0
    assert summary["count"] == 100


def test_summary_of_nothing_says_so():
    assert summary_ms([]) == {
        "p50": None,
        "p95": None,
        "p99": None,
        "max": None,
        "mean": None,
        "count": 0,
    }


def test_per_second_buckets_by_whole_second_from_start():
    assert per_second([100.0, 100.5, 101.2, 103.9, 99.0, 104.0], start=100.0, end=104.0) == [
        2,
        1,
        0,
        1,
    ]
