"""Where things live in a checkout (the CLI runs from the repository, installed editable)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = ROOT / "terraform"
REQUIREMENTS_DIR = ROOT / "requirements"
MINISTACK_VENV = Path(os.environ.get("DATASYNC_MINISTACK_VENV", ROOT / ".tools" / "ministack"))


def var_dir() -> Path:
    """Runtime state of `make run`: logs, Terraform working copy, stores, the env file."""
    return Path(os.environ.get("DATASYNC_VAR_DIR", ROOT / "var"))


def venv_bin(name: str) -> str:
    """A console script of the running interpreter's environment (gunicorn, consumers)."""
    return str(Path(sys.executable).parent / name)
