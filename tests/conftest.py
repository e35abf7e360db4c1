"""Fixtures shared by every test layer: the sample events kept as files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"


def load_event(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "events" / f"{name}.json").read_text())
