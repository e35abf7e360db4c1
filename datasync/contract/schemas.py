"""JSON Schemas of the contract, generated from the models and kept in ``schemas/``.

The files are what other teams read (and what a schema registry would hold); the test
suite fails when they drift from the models, and ``datasync schemas --write`` refreshes them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from datasync.contract.events import SCHEMA_VERSION, Event, UserChanges, UserProfile
from datasync.contract.records import DestinationRecord, RecordPack

SCHEMA_DIR = Path(__file__).parent / "schemas"


def contract_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema, for every published shape of this contract version."""
    shapes: dict[str, Any] = {
        "event": TypeAdapter(Event),
        "destination-record": TypeAdapter(DestinationRecord),
        "destination-record-pack": TypeAdapter(RecordPack),
        "user-profile": TypeAdapter(UserProfile),
        "user-changes": TypeAdapter(UserChanges),
    }
    schemas = {}
    for name, adapter in shapes.items():
        schema = adapter.json_schema(mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://datasync.dev/schemas/v{SCHEMA_VERSION}/{name}.json"
        schemas[f"v{SCHEMA_VERSION}-{name}.json"] = schema
    return schemas


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in contract_schemas().items():
        path = directory / name
        path.write_text(render(schema))
        written.append(path)
    return written


def stale_schemas(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of schema files that are missing or differ from the models."""
    return [
        name
        for name, schema in contract_schemas().items()
        if not (directory / name).is_file() or (directory / name).read_text() != render(schema)
    ]
