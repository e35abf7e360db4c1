"""Where a request's correlation id comes from (docs/observability.md, "Correlation id").

The first valid one of: ``X-Correlation-ID``, ``X-Request-ID`` (what proxies and load
balancers set), the trace id of a W3C ``traceparent`` (what tracing clients send); none: a new
one. A value that is not a valid correlation id is passed over, never an error: the id is
for tracing, and a request is not refused for it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping

from datasync.contract.events import is_valid_correlation_id

# version "-" trace-id "-" parent-id "-" flags (https://www.w3.org/TR/trace-context/); a future
# version may append fields, version 00 may not, and version ff is invalid.
_TRACEPARENT = re.compile(
    r"(?P<version>[0-9a-f]{2})-(?P<trace_id>[0-9a-f]{32})-(?P<parent_id>[0-9a-f]{16})"
    r"-[0-9a-f]{2}(?P<rest>-.*)?"
)


def trace_id_of(traceparent: str) -> str | None:
    """The trace id of a valid ``traceparent`` header, else None."""
    match = _TRACEPARENT.fullmatch(traceparent.strip())
    if match is None or match["version"] == "ff":
        return None
    if match["version"] == "00" and match["rest"] is not None:
        return None
    if set(match["trace_id"]) == {"0"} or set(match["parent_id"]) == {"0"}:
        return None  # all-zero ids are invalid
    return match["trace_id"]


def correlation_id_of(headers: Mapping[str, str]) -> str:
    for name in ("X-Correlation-ID", "X-Request-ID"):
        offered = headers.get(name, "")
        if is_valid_correlation_id(offered):
            return offered
    return trace_id_of(headers.get("traceparent", "")) or uuid.uuid4().hex
