"""The house has three floors: imports point down only, and no runtime imports another.

The dev stack (devstack/) and the benchmark (bench/) are tools beside the house: no runtime
imports them, and neither image holds them.
"""

import ast
import sys
import tomllib
from pathlib import Path

import pytest

from tests.rehearsal import Dockerfile, copied_files

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ["devstack", "bench"]
DOCKERFILES = [ROOT / "apps/api/Dockerfile", ROOT / "apps/consumers/Dockerfile"]

# package -> the top-level packages (or datasync sub-packages) it must never import
FORBIDDEN = {
    "datasync/contract": [
        "apps",
        "lambdas",
        "datasync.core",
        "datasync.settings",
        "boto3",
        "flask",
        *TOOLS,
    ],
    "datasync/core": ["apps", "lambdas", "flask", *TOOLS],
    "datasync/settings.py": ["apps", "lambdas", "datasync.core", *TOOLS],
    "lambdas": [
        "apps",
        "flask",
        "datasync.settings",
        "datasync.core.stores",
        "datasync.core.bus",
        *TOOLS,
    ],
    "apps/api": ["apps.consumers", "apps.cli", "lambdas", "datasync.core.stores", *TOOLS],
    "apps/consumers": ["apps.api", "apps.cli", "lambdas", "flask", "datasync.core.bus", *TOOLS],
    # The operator CLI runs against any deployment: the dev stack adds its commands to it
    # through an entry point (apps/cli/main.py), never through an import.
    "apps/cli": ["apps.api", "apps.consumers", "lambdas", *TOOLS],
    # The dev stack starts the runtimes as processes; it imports none of them.
    "devstack": ["apps", "lambdas", "bench", "flask"],
}

# The configuration table (docs/configuration.md) is generated from every boundary's settings
# module: the one place outside the runtimes that imports their declarations (it runs none).
SETTINGS_DECLARATIONS = {"devstack/configuration.py": {"lambdas.config", "bench.config"}}

# What the benchmark, which runs in a venv of its own (boto3, aiohttp, matplotlib, psycopg, but
# not the project's dependencies), may import from the checkout: standard-library-only modules,
# and the core's boto3 helpers.
BENCH_MAY_IMPORT = {
    "datasync.local_layout",
    "datasync.variables",
    "datasync.core.aws",
    "datasync.core.queues",
    "datasync.core.retry",
    "devstack.processes",
    "devstack.launch",
}
# Lambda code the topology experiment adds to a copy of the stack's Lambda package: it runs in
# the emulator's Lambda workers, with that package on its path, never in the tool.
BENCH_LAMBDA_CODE = {"bench/one_buffer_handler.py"}
FIRST_PARTY = ("apps", "bench", "datasync", "devstack", "lambdas", "tests")


def imported_modules(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def python_files(location: str) -> list[Path]:
    target = ROOT / location
    return [target] if target.is_file() else sorted(target.rglob("*.py"))


@pytest.mark.parametrize("location", sorted(FORBIDDEN))
def test_imports_point_down_only(location):
    files = python_files(location)
    assert files, f"nothing found at {location}"
    violations = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in files
        for module in imported_modules(path)
        for banned in FORBIDDEN[location]
        if module == banned or module.startswith(banned + ".")
        if module not in SETTINGS_DECLARATIONS.get(path.relative_to(ROOT).as_posix(), ())
    ]
    assert violations == []


def test_the_local_layout_module_is_standard_library_only():
    """The benchmark's venv, deploy/kind, the soak and MiniStack's interpreter load it."""
    modules = set(imported_modules(ROOT / "datasync/local_layout.py"))
    top_level = {module.split(".")[0] for module in modules}
    assert top_level <= sys.stdlib_module_names | {"__future__"}, top_level


def test_the_benchmark_imports_from_the_checkout_only_what_its_venv_can_load():
    files = [
        p for p in python_files("bench") if p.relative_to(ROOT).as_posix() not in BENCH_LAMBDA_CODE
    ]
    checkout = {
        f"{path.relative_to(ROOT)} imports {module}"
        for path in files
        for module in imported_modules(path)
        if module.split(".")[0] in FIRST_PARTY and module.split(".")[0] != "bench"
    }
    allowed = {line for line in checkout if line.rsplit(" ", 1)[1] in BENCH_MAY_IMPORT}
    assert checkout - allowed == set()
    for module in BENCH_MAY_IMPORT - {"datasync.core.aws", "datasync.core.queues"}:
        path = ROOT / (module.replace(".", "/") + ".py")
        outside = {
            name
            for name in imported_modules(path)
            if name.split(".")[0] not in sys.stdlib_module_names | {"__future__"}
            and name not in BENCH_MAY_IMPORT
        }
        assert outside == set(), f"{module} imports {outside}: the benchmark's venv lacks them"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_the_images_hold_neither_the_dev_stack_nor_the_benchmark(dockerfile):
    """What the builder stage takes from the build context (COPY lines and .dockerignore)."""
    copied = copied_files(Dockerfile.parse(dockerfile).stage("builder"))
    assert "apps/cli/main.py" in copied and "datasync/core/bus.py" in copied  # the check sees
    tools = [path for path in copied if path.split("/")[0] in TOOLS]
    assert tools == []
    # Nor does the wheel built from what is copied name them (packages, entry points).
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert not [p for p in packages if any(p.startswith(tool) for tool in TOOLS)]
    assert "datasync.commands" not in project["project"].get("entry-points", {})
    importers = {
        f"{path} imports {module}"
        for path in copied
        if path.endswith(".py")
        for module in imported_modules(ROOT / path)
        if module.split(".")[0] in TOOLS
    }
    assert importers == set()
