"""An environment variable as docs/configuration.md shows it, and that table's Markdown.

Standard library only: the Lambdas' settings (lambdas/config.py, in a zip without pydantic) and
the benchmark's (bench/config.py, in a venv of its own) declare their variables with it, and
read them through it; datasync/settings.py and devstack/settings.py describe their pydantic
fields with it. `make docs` writes the table (devstack/configuration.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, what it means, and what it may be."""

    name: str
    description: str
    default: str | None = None  # None: no default (required, or unset)
    allowed: str = ""  # the values it takes, for people: "0-20", "true, false", "URL"
    read_by: tuple[str, ...] = ()  # the runtimes that read it
    also: tuple[str, ...] = ()  # names read when it is unset, e.g. AWS_DEFAULT_REGION

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.also)

    def read(self, env: Mapping[str, str]) -> str | None:
        """Its value in ``env`` (the first of its names that is set and not empty), else the
        default."""
        return next((env[name] for name in self.names if env.get(name)), self.default)


def markdown_table(variables: Iterable[Variable]) -> str:
    """One row per variable: name, default, allowed values, read by, description."""
    lines = [
        "| variable | default | allowed | read by | description |",
        "|---|---|---|---|---|",
    ]
    for v in variables:
        name = " or ".join(f"`{n}`" for n in v.names)
        default = "unset" if v.default is None else f"`{v.default}`" if v.default else "empty"
        cells = [name, default, v.allowed, ", ".join(v.read_by), v.description]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"
