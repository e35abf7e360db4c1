"""Each runtime boundary reads its environment in its settings module, and nowhere else.

A read of ``os.environ`` / ``os.getenv`` anywhere else is a setting that the configuration table
(docs/configuration.md) does not know, with a default of its own. What may touch the whole
environment outside them is listed below, each with why: handing it to a child process, or to
a function that takes a mapping. The checker itself is tested on snippets first.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ["apps", "datasync", "lambdas", "devstack", "bench", "deploy"]
SETTINGS_MODULES = {
    "datasync/settings.py",  # API, consumers, operator CLI
    "devstack/settings.py",  # the local stack
    "lambdas/config.py",  # the Lambdas (a dataclass: no pydantic in the zip)
    "bench/config.py",  # the benchmark (its own venv)
}
OS_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}
READ_METHODS = {"get", "setdefault", "pop", "__getitem__", "__contains__"}
WRITE_METHODS = {"update", "clear", "popitem", "__setitem__", "__delitem__"}

# (file, function) -> (what it does with the environment, why that is no setting read)
ALLOWED = {
    ("apps/api/gunicorn_conf.py", "on_starting"): (
        "write",
        "PROMETHEUS_MULTIPROC_DIR for prometheus-client, which reads it in every worker",
    ),
    ("devstack/terraform.py", "TerraformStack._run"): (
        "whole",
        "Terraform's environment: ours plus where its providers come from",
    ),
    ("devstack/terraform.py", "TerraformStack.outputs"): ("whole", "the same, for `output`"),
    ("devstack/launch.py", "launch"): ("whole", "a child `datasync up`'s environment"),
    ("devstack/local_stack.py", "LocalStack.start_infra"): (
        "whole",
        "the emulator's environment is built from ours (start_ministack filters it)",
    ),
    ("devstack/local_stack.py", "LocalStack.start_apps"): (
        "whole",
        "the API's and consumers' environment: ours plus the stack's settings",
    ),
    ("bench/api_alone.py", "api"): ("whole", "the measured gunicorn's environment"),
    ("bench/stack.py", "start_stack"): ("whole", "a measured `datasync up`'s environment"),
    ("bench/one_buffer_handler.py", "handle"): (
        "whole",
        "Lambda code of the topology experiment: the function's environment goes to "
        "lambdas/config.py, once per destination",
    ),
}


@dataclass(frozen=True)
class Use:
    path: str
    function: str  # qualified name of the enclosing function, or <module>
    line: int
    kind: str  # read, write, or whole (the environment handed on as a mapping)

    def __str__(self) -> str:
        return f"{self.path}:{self.line} ({self.function}): {self.kind}"


def environment_uses(source: str, path: str = "<snippet>") -> list[Use]:
    """Every use of the process environment through the os module in ``source``."""
    tree = ast.parse(source)
    os_aliases: set[str] = set()  # local names of the os module
    direct: dict[str, str] = {}  # local name -> os attribute (from os import environ as env)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            os_aliases |= {a.asname or "os" for a in node.names if a.name == "os"}
            os_aliases |= {"os" for a in node.names if a.name.startswith("os.") and not a.asname}
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            direct |= {a.asname or a.name: a.name for a in node.names if a.name in OS_NAMES}
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    uses = []
    for node in ast.walk(tree):
        attribute = _os_attribute(node, os_aliases, direct)
        if attribute is not None:
            kind = _kind(node, attribute, parents)
            uses.append(Use(path, _enclosing_function(node, parents), node.lineno, kind))
    return uses


def _os_attribute(node: ast.AST, os_aliases: set[str], direct: dict[str, str]) -> str | None:
    if isinstance(node, ast.Attribute) and node.attr in OS_NAMES:
        if isinstance(node.value, ast.Name) and node.value.id in os_aliases:
            return node.attr
    if isinstance(node, ast.Name) and node.id in direct and isinstance(node.ctx, ast.Load):
        return direct[node.id]
    return None


def _kind(node: ast.AST, attribute: str, parents: dict[ast.AST, ast.AST]) -> str:
    parent = parents.get(node)
    if attribute in ("getenv", "getenvb"):
        return "read"
    if attribute in ("putenv", "unsetenv"):
        return "write"
    if isinstance(parent, ast.Subscript) and parent.value is node:
        return "read" if isinstance(parent.ctx, ast.Load) else "write"
    if isinstance(parent, ast.Attribute):
        if parent.attr in READ_METHODS:
            return "read"
        if parent.attr in WRITE_METHODS:
            return "write"
    if isinstance(parent, ast.Compare) and node in parent.comparators:
        return "read"  # "NAME" in os.environ
    return "whole"


def _enclosing_function(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> str:
    names = []
    current = parents.get(node)
    while current is not None:
        if isinstance(current, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(current.name)
        current = parents.get(current)
    return ".".join(reversed(names)) or "<module>"


def tree_uses() -> list[Use]:
    uses = []
    for location in SCANNED:
        for path in sorted((ROOT / location).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative not in SETTINGS_MODULES:
                uses += environment_uses(path.read_text(), relative)
    return uses


# -- the checker ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("import os\nx = os.environ['X']", "read"),
        ("import os\nx = os.environ.get('X', '1')", "read"),
        ("import os\nx = os.getenv('X')", "read"),
        ("import os as o\nx = o.getenv('X')", "read"),
        ("import os.path\nx = os.environ['X']", "read"),
        ("from os import environ\nx = environ.get('X')", "read"),
        ("from os import getenv as g\nx = g('X')", "read"),
        ("import os\nx = 'X' in os.environ", "read"),
        ("import os\nos.environ['X'] = '1'", "write"),
        ("import os\nos.environ.update(X='1')", "write"),
        ("import os\nos.putenv('X', '1')", "write"),
        ("import os\nchild = {**os.environ, 'X': '1'}", "whole"),
        ("import os\nchild = dict(os.environ)", "whole"),
    ],
)
def test_the_checker_sees_each_kind_of_use(source, kind):
    assert [use.kind for use in environment_uses(source)] == [kind]


def test_the_checker_names_the_function_and_leaves_other_environs_alone():
    source = (
        "import os\n"
        "class Stack:\n"
        "    def start(self):\n"
        "        return os.environ.get('X')\n"
        "def app(environ, start_response):\n"  # a WSGI environ is not the process's
        "    return environ.get('PATH_INFO')\n"
    )
    assert [(u.function, u.line, u.kind) for u in environment_uses(source)] == [
        ("Stack.start", 4, "read")
    ]


# -- the tree ------------------------------------------------------------------------------------
def test_nothing_outside_the_settings_modules_reads_the_environment():
    unexpected = [
        str(use)
        for use in tree_uses()
        if ALLOWED.get((use.path, use.function), ("",))[0] != use.kind
    ]
    assert unexpected == [], (
        "read it in the runtime's settings module (with a description: `make docs`), or, for a "
        "use that reads no setting, add it to ALLOWED with why"
    )


def test_every_allowed_use_is_still_there():
    found = {(use.path, use.function) for use in tree_uses()}
    assert set(ALLOWED) - found == set()


def test_the_settings_modules_exist():
    assert all((ROOT / module).is_file() for module in SETTINGS_MODULES)
