"""What one HTTP request to the AWS endpoint was, for billing: service, operation, units.

Pure functions over what a counting proxy sees on the wire (method, path, headers, body sizes).
The service comes from the SigV4 credential scope every AWS SDK signs with; the operation from
``X-Amz-Target`` (JSON protocols: EventBridge, SQS, CloudWatch Logs), from ``Action=`` (query
protocol: older SQS clients, CloudWatch) or, for REST services (Lambda), from method and path.
Billing units follow the list-price rules: EventBridge bills every PutEvents *entry* in 64 KB
chunks; SQS bills every request in 64 KB chunks of its payload; other calls count once.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from urllib.parse import parse_qs

CHUNK_BYTES = 64 * 1024
_CREDENTIAL = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
_RPC_V2 = re.compile(r"/service/[^/]+/operation/([^/?]+)")  # smithy-rpc-v2-cbor (CloudWatch)
_ENTRY_KEY = re.compile(r"(?:Entries|RequestEntry)\.member\.(\d+)\.|RequestEntry\.(\d+)\.")


@dataclass(frozen=True)
class Call:
    service: str  # "sqs", "events", "logs", ...; "unsigned" for plain HTTP (health checks)
    operation: str
    entries: int  # batch entries (PutEvents, *Batch); 1 for a single-item call
    billed_units: int  # what the list price counts for this call
    payload_bytes: int  # PutEvents: the entries' size (what an archive stores); else the body


def service_of(headers: dict[str, str]) -> str:
    match = _CREDENTIAL.search(_header(headers, "authorization"))
    return match.group(1) if match else "unsigned"


def operation_of(method: str, path: str, headers: dict[str, str], body: bytes) -> str:
    target = _header(headers, "x-amz-target")
    if target:
        return target.rsplit(".", 1)[-1]
    action = _query_action(path.partition("?")[2])
    if not action and "x-www-form-urlencoded" in _header(headers, "content-type"):
        action = _query_action(body.decode("utf-8", errors="replace"))
    if action:
        return action
    rpc = _RPC_V2.match(path)
    if rpc:
        return rpc.group(1)
    # REST protocols (Lambda: /2015-03-31/functions/<name>/invocations): method + path shape,
    # with the resource names left out so that calls on different functions group together.
    segments = [s for s in path.partition("?")[0].split("/") if s]
    # /<version>/<collection>/<name>/<sub-resource>/<name>...: names sit at even positions.
    shape = "/".join("{}" if i >= 2 and i % 2 == 0 else s for i, s in enumerate(segments))
    return f"{method} /{shape}"


def classify(
    method: str, path: str, headers: dict[str, str], body: bytes, response_bytes: int = 0
) -> Call:
    service = service_of(headers)
    operation = operation_of(method, path, headers, body)
    entries = _entries(body, headers)
    if service == "events" and operation == "PutEvents":
        sizes = _put_events_sizes(body)
        units = sum(max(1, math.ceil(size / CHUNK_BYTES)) for size in sizes)
        return Call(service, operation, entries, units, sum(sizes))
    return Call(
        service, operation, entries, _billed_units(service, body, response_bytes), len(body)
    )


def _billed_units(service: str, body: bytes, response_bytes: int) -> int:
    if service == "sqs":
        return max(1, math.ceil(max(len(body), response_bytes) / CHUNK_BYTES))
    return 1


def _put_events_sizes(body: bytes) -> list[int]:
    try:
        entries = json.loads(body).get("Entries", [])
    except (ValueError, AttributeError):
        return [len(body)]
    return [len(json.dumps(entry, separators=(",", ":")).encode()) for entry in entries] or [0]


def _entries(body: bytes, headers: dict[str, str]) -> int:
    if "json" in _header(headers, "content-type"):
        try:
            document = json.loads(body or b"{}")
        except ValueError:
            return 1
        if isinstance(document, dict) and isinstance(document.get("Entries"), list):
            return len(document["Entries"])
        return 1
    if b"Entry." in body or b"Entries." in body:
        indices = {int(a or b) for a, b in _ENTRY_KEY.findall(body.decode(errors="replace"))}
        return len(indices) or 1
    return 1


def _query_action(query: str) -> str:
    values = parse_qs(query).get("Action")
    return values[0] if values else ""


def _header(headers: dict[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return ""
