"""`make run`: the whole pipeline on this machine, in the foreground.

Steps: start the emulator (MiniStack on 127.0.0.1:4566 unless DATASYNC_AWS_ENDPOINT_URL
names another, e.g. LocalStack), build the Lambda zip, apply ``terraform/`` to the emulator,
write ``var/local/datasync.env`` from the outputs, start the API (gunicorn) and one
consumer per destination. Ctrl-C or SIGTERM stops everything that was started, in reverse
order, consumers first finishing their batch.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apps.cli.emulator import Emulator, start_ministack
from apps.cli.lambda_package import build_lambda_package
from apps.cli.paths import ROOT, var_dir, venv_bin
from apps.cli.terraform import TerraformStack, prepare_workdir
from datasync.settings import (
    LOCAL_ANALYTICS_HASH_KEY,
    LOCAL_API_KEY,
    QUEUE_KINDS,
    queue_setting_name,
)

STOP_TIMEOUT_SECONDS = 40  # consumers may be inside a 20 s long poll, then finish a batch


def say(message: str) -> None:
    print(f"datasync: {message}", flush=True)


@dataclass
class StackConfig:
    var_dir: Path
    emulator_port: int = 4566
    emulator_host: str = "127.0.0.1"
    api_port: int = 8080
    external_endpoint: str | None = None  # a LocalStack-compatible emulator someone else runs
    stream_terraform: bool = True
    build_dir: Path | None = None  # Lambda zips are content-addressed: safe to share

    @classmethod
    def from_environment(cls) -> StackConfig:
        return cls(
            var_dir=var_dir(),
            emulator_port=int(os.environ.get("DATASYNC_EMULATOR_PORT", "4566")),
            emulator_host=os.environ.get("DATASYNC_EMULATOR_HOST", "127.0.0.1"),
            api_port=int(os.environ.get("API_PORT", "8080")),
            external_endpoint=os.environ.get("DATASYNC_AWS_ENDPOINT_URL") or None,
        )

    @property
    def local_dir(self) -> Path:
        return self.var_dir / "local"

    @property
    def logs_dir(self) -> Path:
        return self.local_dir / "logs"

    @property
    def store_dir(self) -> Path:
        return self.var_dir / "stores"

    @property
    def env_file(self) -> Path:
        return self.local_dir / "datasync.env"

    @property
    def pid_file(self) -> Path:
        return self.local_dir / "processes.json"


@dataclass
class LocalStack:
    config: StackConfig
    emulator: Emulator | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    # -- infrastructure ---------------------------------------------------------------------
    def start_infra(self) -> dict[str, Any]:
        cfg = self.config
        cfg.logs_dir.mkdir(parents=True, exist_ok=True)
        stop_leftovers(cfg.pid_file)
        if cfg.external_endpoint:
            say(f"using the emulator at {cfg.external_endpoint} (DATASYNC_AWS_ENDPOINT_URL)")
            self.emulator = Emulator(cfg.external_endpoint)
        else:
            say(f"starting MiniStack on {cfg.emulator_host}:{cfg.emulator_port} ...")
            started = time.monotonic()
            self.emulator = start_ministack(
                cfg.emulator_host, cfg.emulator_port, cfg.logs_dir / "ministack.log"
            )
            self._record_pids()
            say(f"MiniStack is up ({time.monotonic() - started:.1f}s)")
        target = "aws" if cfg.external_endpoint else "local"
        say(f"building the Lambda package ({target}) ...")
        package = build_lambda_package(target, cfg.build_dir or cfg.var_dir / "build")  # type: ignore[arg-type]
        say(f"Lambda package: {package}")
        say("applying terraform/ to the emulator (about a minute: SQS queues settle slowly) ...")
        started = time.monotonic()
        workdir = prepare_workdir(cfg.local_dir / "terraform", self.emulator.url)
        stack = TerraformStack(workdir, stream=cfg.stream_terraform)
        stack.init()
        self.outputs = stack.apply(
            {
                "lambda_package_path": str(package),
                "analytics_hash_key": LOCAL_ANALYTICS_HASH_KEY,
                # The override turns alarms off for re-applied emulator stacks (MiniStack reads
                # alarms back incompletely, so every re-plan shows a diff). We apply to a fresh
                # emulator every time, so create them and exercise that part of the config too.
                "create_alarms": "true",
            }
        )
        say(f"terraform applied ({time.monotonic() - started:.0f}s)")
        self.write_env_file()
        return self.outputs

    def app_environment(self) -> dict[str, str]:
        """Settings for the API, consumers and CLI, derived from the Terraform outputs."""
        assert self.emulator is not None
        env = {
            "DATASYNC_ENV": "local",
            "AWS_REGION": self.outputs["region"],
            "AWS_ENDPOINT_URL": self.emulator.url,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",  # noqa: S105 - the emulator's fixed dummy
            "DATASYNC_EVENT_BUS_NAME": self.outputs["event_bus_name"],
            "DATASYNC_EVENT_BUS_ARN": self.outputs["event_bus_arn"],
            "DATASYNC_ARCHIVE_ARN": self.outputs["archive_arn"],
            "DATASYNC_STORE_DIR": str(self.config.store_dir),
            "DATASYNC_ANALYTICS_HASH_KEY": LOCAL_ANALYTICS_HASH_KEY,
        }
        for destination in self.outputs["queue_urls"]:
            for kind in QUEUE_KINDS:
                url = self.outputs[f"{kind}_urls"][destination]
                env[queue_setting_name(destination, kind)] = url
        return env

    def write_env_file(self) -> Path:
        lines = [f"{key}={value}" for key, value in sorted(self.app_environment().items())]
        self.config.env_file.parent.mkdir(parents=True, exist_ok=True)
        self.config.env_file.write_text(
            "# Written by `datasync up` from the Terraform outputs; read by the CLI.\n"
            + "\n".join(lines)
            + "\n"
        )
        return self.config.env_file

    # -- applications -----------------------------------------------------------------------
    def start_apps(self) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("DATASYNC_QUEUE")}
        base.update(self.app_environment())
        base["DATASYNC_ENV_FILE"] = str(self.config.env_file)
        api_env = {**base, "API_HOST": "127.0.0.1", "API_PORT": str(self.config.api_port)}
        self._spawn(
            "api",
            [
                venv_bin("gunicorn"),
                "--config",
                "python:apps.api.gunicorn_conf",
                "apps.api.wsgi:app",
            ],
            api_env,
        )
        for destination in self.outputs["queue_urls"]:
            self._spawn(
                f"consumer-{destination}",
                [
                    venv_bin("datasync-consumer"),
                    "--destination",
                    destination,
                    "--concurrency",
                    os.environ.get("DATASYNC_CONSUMER_CONCURRENCY", "4"),
                ],
                base,
            )

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        log_path = self.config.logs_dir / f"{name}.log"
        with log_path.open("ab") as log:
            self.processes[name] = subprocess.Popen(  # noqa: S603 - our own executables
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=ROOT, start_new_session=True,
            )  # fmt: skip
        self._record_pids()

    def _record_pids(self) -> None:
        """Remember what we started, so a run after a hard kill can clean up (stop_leftovers)."""
        groups = [p.pid for p in self.processes.values()]
        if self.emulator and self.emulator.process:
            groups.append(self.emulator.process.pid)
        self.config.pid_file.write_text(json.dumps({"process_groups": groups}))

    def wait_for_api(self, timeout: float = 30) -> None:
        import urllib.request

        url = f"http://127.0.0.1:{self.config.api_port}/readyz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_processes()
            try:
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        log = self.config.logs_dir / "api.log"
        raise RuntimeError(f"the API did not become ready in {timeout:.0f}s; see {log}")

    def check_processes(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                log = self.config.logs_dir / f"{name}.log"
                raise RuntimeError(f"{name} exited with code {process.returncode}; see {log}")
        if self.emulator and self.emulator.process and self.emulator.process.poll() is not None:
            raise RuntimeError(f"the emulator exited; see {self.config.logs_dir / 'ministack.log'}")

    # -- stopping ---------------------------------------------------------------------------
    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for name, process in self.processes.items():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{name} did not stop in time; killing it")
                process.kill()
                process.wait(5)
        self.processes.clear()
        if self.emulator:
            self.emulator.stop()
        self.config.pid_file.unlink(missing_ok=True)

    def summary(self) -> str:
        cfg = self.config
        assert self.emulator is not None
        key = "(your DATASYNC_API_KEYS)" if os.environ.get("DATASYNC_API_KEYS") else LOCAL_API_KEY
        return "\n".join(
            [
                "",
                "datasync is running",
                f"  API          http://127.0.0.1:{cfg.api_port}   (OpenAPI: /openapi.json)",
                f"  API key      {key}",
                f"  emulator     {self.emulator.url}",
                f"  event bus    {self.outputs['event_bus_name']}",
                f"  stores       {cfg.store_dir}  (SQLite; DATABASE_URL switches to PostgreSQL)",
                f"  logs         {cfg.logs_dir}",
                f"  settings     {cfg.env_file}",
                "",
                f"  try:  curl -s -X POST http://127.0.0.1:{cfg.api_port}/v1/users \\",
                f"          -H 'X-API-Key: {key}' -H 'Content-Type: application/json' \\",
                '          -d \'{"email": "ada@example.com", "name": "Ada", '
                '"marketing_opt_in": true}\'',
                "        .venv/bin/datasync get crm <user_id>     .venv/bin/datasync status",
                "",
                "Ctrl-C stops everything.",
            ]
        )


def stop_leftovers(pid_file: Path) -> None:
    """Stop the processes of an earlier run that was killed before it could clean up."""
    try:
        groups = json.loads(pid_file.read_text())["process_groups"]
    except (OSError, ValueError, KeyError):
        return
    alive = [g for g in groups if _group_alive(g)]
    if alive:
        say(f"stopping {len(alive)} process group(s) left by an earlier run that was killed")
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for group in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, sig)
        deadline = time.monotonic() + 10
        while any(_group_alive(g) for g in alive) and time.monotonic() < deadline:
            time.sleep(0.2)
    pid_file.unlink(missing_ok=True)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def run_foreground(infra_only: bool = False) -> int:
    """Start the stack and block until Ctrl-C / SIGTERM; always clean up."""
    stack = LocalStack(StackConfig.from_environment())

    def on_sigterm(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # one shutdown path for Ctrl-C and SIGTERM

    signal.signal(signal.SIGTERM, on_sigterm)
    # Python keeps SIGINT ignored if it inherited it ignored (a job started in the background
    # by a non-interactive shell): install the handler so Ctrl-C always means "stop".
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        stack.start_infra()
        if not infra_only:
            stack.start_apps()
            say("starting the API and consumers ...")
            stack.wait_for_api()
            print(stack.summary(), flush=True)
        else:
            say(f"infrastructure is up; settings in {stack.config.env_file}. Ctrl-C stops it.")
        while True:
            stack.check_processes()
            time.sleep(1)
    except KeyboardInterrupt:
        return 0
    except Exception as exc:  # noqa: BLE001 - report, then clean up
        print(f"datasync: error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        # A second Ctrl-C or SIGTERM (e.g. from a wrapper that forwards signals) must not
        # abort the cleanup half-way and leave processes behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        say("stopping ...")
        stack.stop()
        say("stopped")
