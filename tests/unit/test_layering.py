"""The house has three floors: imports point down only, and no runtime imports another."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package -> the top-level packages (or datasync sub-packages) it must never import
FORBIDDEN = {
    "datasync/contract": [
        "apps",
        "lambdas",
        "datasync.core",
        "datasync.settings",
        "boto3",
        "flask",
    ],
    "datasync/core": ["apps", "lambdas", "flask"],
    "datasync/settings.py": ["apps", "lambdas", "datasync.core"],
    "lambdas": ["apps", "flask", "datasync.settings", "datasync.core.stores", "datasync.core.bus"],
    "apps/api": ["apps.consumers", "apps.cli", "lambdas", "datasync.core.stores"],
    "apps/consumers": ["apps.api", "apps.cli", "lambdas", "flask", "datasync.core.bus"],
    "apps/cli": ["apps.api", "apps.consumers", "lambdas"],
}


def imported_modules(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


@pytest.mark.parametrize("location", sorted(FORBIDDEN))
def test_imports_point_down_only(location):
    target = ROOT / location
    files = [target] if target.is_file() else sorted(target.rglob("*.py"))
    assert files, f"nothing found at {location}"
    violations = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in files
        for module in imported_modules(path)
        for banned in FORBIDDEN[location]
        if module == banned or module.startswith(banned + ".")
    ]
    assert violations == []
