"""The dev stack's commands of `datasync`: `up` and `package-lambda`.

The operator CLI (apps/cli) finds them through the ``datasync.commands`` entry point this
package's pyproject.toml declares, and never imports this package; an install without the dev
stack (the images) has neither command. Each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from datasync.core import exit_codes


def cmd_up(args: argparse.Namespace) -> int:
    from devstack.local_stack import run_foreground

    return run_foreground(infra_only=args.infra_only, fresh=args.fresh)


def cmd_package_lambda(args: argparse.Namespace) -> int:
    from devstack.lambda_package import build_lambda_package

    path = build_lambda_package(args.target, Path(args.out), architecture=args.architecture)
    print(path)
    return exit_codes.OK


def register(commands: Any) -> None:
    up = commands.add_parser(
        "up", help="run the whole pipeline locally (make run)",
        epilog="examples:\n  datasync up            # what `make run` runs\n"
        "  datasync up --fresh    # from a clean slate\n  datasync up --infra-only\n",
    )  # fmt: skip
    up.add_argument("--infra-only", action="store_true", help="emulator + Terraform, no apps")
    up.add_argument(
        "--fresh",
        action="store_true",
        help="start from a clean slate: forget the emulator's saved state (queued events too), "
        "Terraform's state, the stores and the logs (like `make clean-state`)",
    )
    up.set_defaults(func=cmd_up)

    package = commands.add_parser(
        "package-lambda", help="build the Lambda zip",
        epilog="examples:\n  datasync package-lambda --architecture arm64 --out var/build\n",
    )  # fmt: skip
    package.add_argument("--target", choices=("aws", "local"), default="aws")
    package.add_argument("--architecture", choices=("x86_64", "arm64"), default="x86_64")
    package.add_argument("--out", default="var/build")
    package.set_defaults(func=cmd_package_lambda)
