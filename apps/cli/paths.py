"""Where things live in a checkout (the CLI runs from the repository, installed editable)."""

from __future__ import annotations

import sys
from pathlib import Path

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
