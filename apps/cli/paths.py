"""Where things live in a checkout (the CLI runs from the repository, installed editable)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from apps.cli.settings import ROOT, cli_settings

TERRAFORM_DIR = ROOT / "terraform"
REQUIREMENTS_DIR = ROOT / "requirements"

__all__ = ["REQUIREMENTS_DIR", "ROOT", "TERRAFORM_DIR", "var_dir", "venv_bin"]


def var_dir() -> Path:
    """Runtime state of `make run`: logs, Terraform working copy, stores, the env file."""
    return cli_settings().var_dir


def venv_bin(name: str) -> str:
    """A console script of the running interpreter's environment (gunicorn, consumers)."""
    return str(Path(sys.executable).parent / name)


def __getattr__(name: str) -> Any:
    # MINISTACK_VENV used to be a constant read from the environment at import; callers that
    # still import it get the setting's current value (read when asked, not at import).
    if name == "MINISTACK_VENV":
        return cli_settings().ministack_venv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
