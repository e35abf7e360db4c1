"""Fixtures shared by every test layer: the sample events kept as files; how `make test`
splits the suite between its workers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def load_event(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "events" / f"{name}.json").read_text())


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks into its group ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`make test` runs two pytest-xdist workers with ``--dist loadgroup``. Every test of the
    session's local stack goes to one worker, in file order as before (they share one emulator
    and take turns hurting it); every other file is one unit, so its module fixtures (a
    Terraform init, a stack of its own) run once. Without xdist the marks do nothing."""
    for item in items:
        group = "session-stack" if "stack" in item.fixturenames else item.path.stem
        item.add_marker(pytest.mark.xdist_group(group))
