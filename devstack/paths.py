"""Where things live in a checkout (the dev stack runs from the repository, installed editable)."""

from __future__ import annotations

import sys
from pathlib import Path

from datasync.local_layout import CHECKOUT as ROOT

TERRAFORM_DIR = ROOT / "terraform"
REQUIREMENTS_DIR = ROOT / "requirements"

__all__ = ["REQUIREMENTS_DIR", "ROOT", "TERRAFORM_DIR", "venv_bin"]


def venv_bin(name: str) -> str:
    """A console script of the running interpreter's environment (gunicorn, consumers)."""
    return str(Path(sys.executable).parent / name)
