"""Percentiles and rates (pure, standard library only)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def percentile(values: Sequence[float], p: float) -> float | None:
    """The p-th percentile (0-100) by linear interpolation between closest ranks.

    The same definition as numpy's default ("linear"): rank = p/100 * (n - 1).
    """
    if not values:
        return None
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be within 0..100, got {p}")
    ordered = sorted(values)
    rank = p / 100 * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(seconds: Iterable[float]) -> dict[str, float | int | None]:
    """p50/p95/p99/max/mean (milliseconds, 1 decimal) and count of durations in seconds."""
    values = sorted(s * 1000 for s in seconds)
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None, "count": 0}
    return {
        "p50": _round(percentile(values, 50)),
        "p95": _round(percentile(values, 95)),
        "p99": _round(percentile(values, 99)),
        "max": _round(values[-1]),
        "mean": _round(sum(values) / len(values)),
        "count": len(values),
    }


def per_second(times: Iterable[float], start: float, end: float) -> list[int]:
    """How many of ``times`` fall in each whole second from ``start`` up to ``end``."""
    buckets = [0] * max(0, math.ceil(end - start))
    for t in times:
        index = int(t - start)
        if 0 <= index < len(buckets):
            buckets[index] += 1
    return buckets


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
