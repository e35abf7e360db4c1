"""One backoff rule for every retry in datasync: exponential, capped, with jitter.

Publishing to the bus, re-sending refused SQS entries, making a failed message visible again
and a worker waiting out an unreachable queue all wait the same way. Jitter matters because
failures arrive together (a bus outage fails every request at once): without it every client
retries in the same instant and the recovering service is hit by a synchronised wave.

"Equal jitter" (AWS Architecture Blog, "Exponential Backoff And Jitter"): the wait is at least
half of the exponential step, so retries still back off, and the other half is random.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    jitter: bool = True,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number ``attempt`` (1 is the first retry)."""
    # The exponent is bounded: a float overflows past 2**1023, and any cap is reached long before.
    step = min(cap, base * 2 ** min(max(0, attempt - 1), 64))
    if not jitter:
        return step
    return step / 2 + rng() * step / 2


def backoff_seconds(attempt: int, *, base: float, cap: float, jitter: bool = True) -> int:
    """The same rule in whole seconds (SQS visibility timeouts are integers), at least 1."""
    return max(1, math.ceil(backoff_delay(attempt, base=base, cap=cap, jitter=jitter)))
