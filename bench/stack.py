"""The pipeline under test: a `datasync up` this tool starts (and always stops), or a running one.

Started: ``<repo>/.venv/bin/datasync up`` as a child (devstack/launch.py) with its own var dir
and free ports (never 4566/8080), so that the same tool measures an older checkout too.
Running: the files `datasync up` wrote (``var/local/datasync.env``, ``processes.json`` beside
it). Either way the tool sees the stack only as a user does, through the local layout
(datasync/local_layout.py): the env file, the API URL, the emulator endpoint, the stores and the
processes.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from bench.config import api_key
from datasync.local_layout import (
    Layout,
    api_ready,
    destinations_in,
    queue_setting_name,
    read_env_file,
    read_process_file,
)
from devstack.launch import LaunchedStack, launch


class StackError(RuntimeError):
    pass


@dataclass
class Stack:
    api_url: str
    api_key: str
    layout: Layout
    env: dict[str, str] = field(default_factory=dict)
    launched: LaunchedStack | None = None  # None: someone else runs it

    @property
    def destinations(self) -> list[str]:
        return destinations_in(self.env)

    @property
    def endpoint(self) -> str:
        return self.env["AWS_ENDPOINT_URL"]

    @property
    def emulator_log(self) -> Path:
        return self.layout.emulator_log

    def queue_url(self, destination: str, kind: str = "queue") -> str | None:
        return self.env.get(queue_setting_name(destination, kind))

    def process_groups(self) -> list[int]:
        """The process groups `datasync up` recorded (API, consumers, emulator), and its own."""
        groups = [child.pid for child in read_process_file(self.layout.process_file)]
        if self.launched is not None:
            groups.append(self.launched.process.pid)
        return groups

    def stop(self) -> None:
        if self.launched is not None:
            self.launched.stop()


def start_stack(
    repo: Path,
    var_dir: Path,
    *,
    build_dir: Path,
    extra_env: dict[str, str] | None = None,
    drop_env: tuple[str, ...] = (),
    say=print,
) -> Stack:
    """`datasync up` on free ports in ``var_dir`` (its stores wiped first); waits until ready."""
    layout = Layout.on_free_ports(var_dir)
    shutil.rmtree(layout.store_dir, ignore_errors=True)
    shutil.rmtree(layout.local_dir, ignore_errors=True)
    _share_build_dir(build_dir, layout.build_dir)
    env = {k: v for k, v in os.environ.items() if k not in drop_env} | (extra_env or {})
    launched = launch(
        repo / ".venv" / "bin" / "datasync", layout, log_path=var_dir / "datasync-up.log",
        env=env, cwd=repo,
    )  # fmt: skip
    stack = Stack(layout.api_url, api_key(env), layout, launched=launched)
    try:
        launched.wait_until_ready(say=say)
        stack.env = launched.env()
    except BaseException:
        stack.stop()
        raise
    return stack


def _share_build_dir(shared: Path, link: Path) -> None:
    """Stacks share one Lambda zip cache (`datasync up` builds into <var>/build; zips are
    content-addressed), so a zip is built once, not once per stack."""
    link.parent.mkdir(parents=True, exist_ok=True)
    shared.mkdir(parents=True, exist_ok=True)
    if not link.exists() and not link.is_symlink():
        link.symlink_to(shared.resolve(), target_is_directory=True)


def attach_stack(env_file: Path, api_url: str) -> Stack:
    if not env_file.is_file():
        raise StackError(
            f"{env_file} not found: start the stack (`make run`) or pass the env file it wrote"
        )
    layout = Layout.of_env_file(env_file)
    stack = Stack(api_url.rstrip("/"), api_key(), layout)
    stack.env = read_env_file(env_file)
    if not api_ready(stack.api_url):
        raise StackError(f"the API at {stack.api_url} is not ready (GET /readyz); is it running?")
    return stack
