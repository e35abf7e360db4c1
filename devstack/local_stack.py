"""`make run`: the whole pipeline on this machine, in the foreground, supervised.

Steps: start the emulator (MiniStack on 127.0.0.1:4566, with the state it saved when it was
last stopped, unless DATASYNC_AWS_ENDPOINT_URL names another emulator, e.g. LocalStack), build
the Lambda zip, bring ``terraform/`` up to date in the emulator (or skip Terraform when nothing
changed since the last apply and every resource is still there), write
``var/local/datasync.env`` from the outputs, start the API (gunicorn) and one consumer per
destination, then supervise: a child that exits is restarted with backoff.

Only a stop request (SIGINT, SIGTERM, SIGHUP) or the emulator dying ends the run. The stop is
ordered and bounded (30 s): the API and consumers first, in parallel (consumers finish the batch
in hand), then the emulator, which saves its state - queued messages included - for the next run.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasync.core.logging import JsonFormatter
from datasync.local_layout import (
    MINISTACK_BATCH_LIMIT,
    Layout,
    emulator_batch_limit,
    emulator_patch_line,
    wait_until_ready,
    write_env_file,
)
from datasync.settings import (
    LOCAL_ANALYTICS_HASH_KEY,
    LOCAL_API_KEY,
    QUEUE_KINDS,
    Settings,
    queue_setting_name,
)
from devstack.deployment import buffered_messages, missing_resources
from devstack.emulator import STOP_SECONDS as EMULATOR_STOP_SECONDS
from devstack.emulator import Emulator, has_saved_state, port_in_use, start_ministack
from devstack.lambda_package import build_lambda_package
from devstack.paths import ROOT, venv_bin
from devstack.processes import ProcessFile, exit_description, spawn, stop_leftovers
from devstack.settings import (
    LOCAL_INTAKE_CONCURRENCY,
    LOCAL_LAMBDA_CONCURRENCY,
    LOCAL_RECEIVE_WAIT_SECONDS,
    consumer_receive_wait_seconds,
    stack_settings,
)
from devstack.supervisor import (
    StopLatch,
    StopRequested,
    Supervised,
    group_stoppable,
    stop_together,
)
from devstack.terraform import (
    TerraformError,
    TerraformStack,
    forget_state,
    inputs_fingerprint,
    prepare_workdir,
)

# The whole stop fits in 30 s (28 plus reaping): the apps get up to 18 (a consumer's long poll,
# 5 s locally, plus the batch in hand), the Lambdas what is left but the emulator's 8, the
# emulator (saving its state takes 0.1-3 s, longer while Lambdas still run) the rest.
STOP_SECONDS = 28
APPS_STOP_SECONDS = 18
API_READY_SECONDS = 30


def show(text: str, *, file: Any = None) -> None:
    """Print; a closed terminal (SIGHUP) must not break the stop."""
    try:
        print(text, file=file or sys.stdout, flush=True)
    except OSError:
        pass


# make run's own lines, also written as JSON (service datasync-up) to logs/up.log like every
# runtime's log, so `datasync logs` and a log shipper read one format (docs/observability.md).
UP_LOG = logging.getLogger("datasync.up")


def say(message: str) -> None:
    show(f"datasync: {message}")
    UP_LOG.info(message)


def keep_json_log(path: Path) -> None:
    """Send the supervisor's lines to ``path`` as JSON too (replacing an earlier file handler)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonFormatter("datasync-up"))
    for old in UP_LOG.handlers:
        old.close()
    UP_LOG.handlers[:] = [handler]
    UP_LOG.setLevel(logging.INFO)
    UP_LOG.propagate = False  # the terminal already has the line


@dataclass
class StackConfig:
    layout: Layout  # where its files are, which ports it listens on
    external_endpoint: str | None = None  # a LocalStack-compatible emulator someone else runs
    stream_terraform: bool = True
    build_dir: Path | None = None  # Lambda zips are content-addressed: safe to share
    consumer_concurrency: int = 1
    receive_wait_seconds: int = LOCAL_RECEIVE_WAIT_SECONDS  # the consumers' long poll
    lambda_concurrency: int = LOCAL_LAMBDA_CONCURRENCY  # batches at once per destination function
    intake_concurrency: int = LOCAL_INTAKE_CONCURRENCY  # batches at once of the intake function

    @classmethod
    def from_environment(cls) -> StackConfig:
        settings = stack_settings()
        return cls(
            layout=settings.layout,
            external_endpoint=settings.external_endpoint,
            consumer_concurrency=settings.consumer_concurrency,
            receive_wait_seconds=consumer_receive_wait_seconds(),
            lambda_concurrency=settings.lambda_concurrency,
            intake_concurrency=settings.intake_concurrency,
        )


@dataclass
class LocalStack:
    config: StackConfig
    latch: StopLatch = field(default_factory=StopLatch)  # not installed: never asks to stop
    emulator: Emulator | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    apps: dict[str, Supervised] = field(default_factory=dict)
    # /metrics ports on 127.0.0.1: "api" and one per consumer. Chosen once per run, so that a
    # restarted app serves where the env file and the summary say.
    metrics_ports: dict[str, int] = field(default_factory=dict)
    # Why MiniStack runs as shipped (Lambda batches of at most 10), or None: lifted, or not ours.
    emulator_as_shipped: str | None = None

    # -- infrastructure ---------------------------------------------------------------------
    def start_infra(self, *, fresh: bool = False) -> dict[str, Any]:
        cfg, layout = self.config, self.config.layout
        self.clear_the_way(fresh=fresh)
        keep_json_log(layout.log("up"))
        if cfg.external_endpoint:
            say(f"using the emulator at {cfg.external_endpoint} (DATASYNC_AWS_ENDPOINT_URL)")
            self.emulator = Emulator(cfg.external_endpoint)
        else:
            self._reconcile_saved_state()
            restoring = has_saved_state(layout.emulator_state_dir)
            say(
                f"starting MiniStack on {layout.emulator_host}:{layout.emulator_port}"
                + (f" with its saved state ({layout.emulator_state_dir})" if restoring else "")
                + " ..."
            )
            started = time.monotonic()
            self.emulator = start_ministack(
                stack_settings(), layout, env=dict(os.environ), latch=self.latch
            )
            self._record_pids()
            say(f"MiniStack is up ({time.monotonic() - started:.1f}s)")
            self.emulator_as_shipped = emulator_as_shipped(layout.emulator_log)
            if self.emulator_as_shipped:
                say(self.emulator_as_shipped)
        target = "aws" if cfg.external_endpoint else "local"
        say(f"building the Lambda package ({target}) ...")
        package = build_lambda_package(target, cfg.build_dir or layout.build_dir)  # type: ignore[arg-type]
        say(f"Lambda package: {package}")
        self.outputs = self._bring_terraform_up_to_date(package)
        self.write_env_file()
        return self.outputs

    def _reconcile_saved_state(self) -> None:
        """Emulator state and Terraform state must describe the same thing, or neither is used."""
        cfg = self.config
        stack_record = cfg.layout.terraform_dir / "applied.json"
        if not has_saved_state(cfg.layout.emulator_state_dir):
            if stack_record.exists():
                say(
                    "the emulator saved no state last time (it was killed, not stopped): "
                    "applying terraform/ to an empty emulator"
                )
            forget_state(cfg.layout.terraform_dir)
        elif not stack_record.exists():
            say(
                "the emulator's saved state has no finished Terraform apply to match: "
                "starting from an empty emulator"
            )
            shutil.rmtree(cfg.layout.emulator_state_dir)
            forget_state(cfg.layout.terraform_dir)

    def _bring_terraform_up_to_date(self, package: Path) -> dict[str, Any]:
        assert self.emulator is not None
        cfg = self.config
        started = time.monotonic()
        workdir = prepare_workdir(cfg.layout.terraform_dir, self.emulator.url)
        stack = TerraformStack(workdir, stream=cfg.stream_terraform)
        variables = self.terraform_variables(package)
        applied = stack.applied()
        why = self._why_apply(applied, inputs_fingerprint(workdir, variables), package)
        if why is None:
            assert applied is not None
            say(
                "terraform/: nothing changed since the last apply and the emulator has every "
                f"resource (checked in {time.monotonic() - started:.1f}s): not running terraform"
            )
            return applied.outputs
        say(f"applying terraform/ to the emulator: {why} ...")
        stack.init(self.latch)
        try:
            outputs = stack.apply(variables, self.latch)
        except TerraformError as exc:
            if applied is None or cfg.external_endpoint:
                raise
            raise TerraformError(
                f"{exc}\nAfter an interrupted apply the emulator and Terraform's state may "
                "disagree: `make clean-state` starts over (queued events are lost)."
            ) from None
        say(f"terraform applied ({time.monotonic() - started:.0f}s)")
        return outputs

    def terraform_variables(self, package: Path) -> dict[str, str]:
        """What `make run` applies terraform/ with (besides the emulator override)."""
        return {
            "lambda_package_path": str(package),
            "analytics_hash_key": LOCAL_ANALYTICS_HASH_KEY,
            # The override turns alarms off (MiniStack reads them back incompletely, so every
            # plan shows a diff). We keep them on to exercise that part of the configuration:
            # restarts with nothing changed skip Terraform, and a changed input re-applies them.
            "create_alarms": "true",
            # MiniStack runs up to 5 batches per mapping at once unless told, each in a worker
            # process of its own. The intake's batches carry every live event; the destinations'
            # functions only what the intake hands over, and replays (BENCHMARKS.md).
            "lambda_maximum_concurrency": str(self.config.lambda_concurrency),
            "intake_maximum_concurrency": str(self.config.intake_concurrency),
        }

    def _why_apply(self, applied: Any, fingerprint: str, package: Path) -> str | None:
        """Why Terraform must run, or None when it provably has nothing to do."""
        if self.config.external_endpoint:
            return "an external emulator (its state is not ours to trust)"
        if applied is None:
            return "first apply (about a minute: SQS queues settle slowly)"
        if applied.fingerprint is None:
            return "the last apply did not finish"
        if applied.fingerprint != fingerprint:
            return "terraform/ or the Lambda package changed since the last apply"
        assert self.emulator is not None
        missing = missing_resources(self.emulator.url, applied.outputs, package)
        if missing:
            return f"the emulator lacks {', '.join(missing[:3])}"
        return None

    def clear_the_way(self, *, fresh: bool) -> None:
        """Stop what a killed run left (its pids are in the state we may forget), then forget."""
        stop_leftovers(ProcessFile(self.config.layout.process_file), say)
        if fresh:
            self.forget_state()
        self.config.layout.logs_dir.mkdir(parents=True, exist_ok=True)

    def forget_state(self) -> None:
        """A clean slate (`datasync up --fresh`, like `make clean-state`): the emulator's saved
        state with its queued events, Terraform's state, the stores and the logs."""
        for directory in (self.config.layout.local_dir, self.config.layout.store_dir):
            if directory.exists():
                say(f"--fresh: removing {directory}")
                shutil.rmtree(directory)

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
            "DATASYNC_DASHBOARD_SESSIONS_TABLE": self.outputs["dashboard_sessions_table"],
            "DATASYNC_STORE_DIR": str(self.config.layout.store_dir),
            "DATASYNC_ANALYTICS_HASH_KEY": LOCAL_ANALYTICS_HASH_KEY,
        }
        for destination in self.outputs["queue_urls"]:
            for kind in QUEUE_KINDS:
                url = self.outputs[f"{kind}_urls"][destination]
                env[queue_setting_name(destination, kind)] = url
        env["DATASYNC_INTAKE_QUEUE_URL"] = self.outputs["intake_queue_url"]
        env["DATASYNC_INTAKE_DLQ_URL"] = self.outputs["intake_dlq_url"]
        env["DATASYNC_API_METRICS_URL"] = self.metrics_url("api")
        env["DATASYNC_CONSUMER_METRICS_URLS"] = ",".join(
            f"{destination}={self.metrics_url(destination)}"
            for destination in self.outputs["queue_urls"]
        )
        return env

    def metrics_port(self, app: str) -> int:
        """The /metrics port of "api" or of a destination's consumer: a free one, kept."""
        if app not in self.metrics_ports:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                self.metrics_ports[app] = int(sock.getsockname()[1])
        return self.metrics_ports[app]

    def metrics_url(self, app: str) -> str:
        return f"http://127.0.0.1:{self.metrics_port(app)}/metrics"

    def write_env_file(self) -> Path:
        return write_env_file(self.config.layout.env_file, self.app_environment())

    # -- applications -----------------------------------------------------------------------
    def start_apps(self) -> None:
        cfg, layout = self.config, self.config.layout
        if port_in_use("127.0.0.1", layout.api_port):
            raise RuntimeError(
                f"port {layout.api_port} is already in use: is another `make run` running? "
                "Stop it, or pick another port with API_PORT"
            )
        base = {k: v for k, v in os.environ.items() if not k.startswith("DATASYNC_QUEUE")}
        base.update(self.app_environment())
        base["DATASYNC_ENV_FILE"] = str(layout.env_file)
        # Not the apps' 20 s unless asked for: `make run` must stop within its 30 s budget.
        base["DATASYNC_RECEIVE_WAIT_SECONDS"] = str(cfg.receive_wait_seconds)
        # The local API and its metrics listen on loopback whatever the shell says.
        api_env = {
            **base,
            "API_HOST": "127.0.0.1",
            "API_PORT": str(layout.api_port),
            "DATASYNC_API_METRICS_HOST": "127.0.0.1",
            "DATASYNC_API_METRICS_PORT": str(self.metrics_port("api")),
        }
        api = [venv_bin("gunicorn"), "--config", "python:apps.api.gunicorn_conf"]
        api.append("apps.api.wsgi:app")
        self._supervise("api", api, api_env)
        for destination in self.outputs["queue_urls"]:
            consumer = [
                venv_bin("datasync-consumer"), "--destination", destination,
                "--concurrency", str(cfg.consumer_concurrency), "--health-host", "127.0.0.1",
            ]  # fmt: skip
            consumer_env = {**base, "DATASYNC_HEALTH_PORT": str(self.metrics_port(destination))}
            self._supervise(f"consumer-{destination}", consumer, consumer_env)
        self._record_pids()

    def _supervise(self, name: str, command: list[str], env: dict[str, str]) -> None:
        log = self.config.layout.log(name)

        def start() -> Any:
            return spawn(command, log_path=log, env=env, cwd=ROOT)

        app = Supervised(name, start, say, log_hint=f"; log: {log}")
        app.launch()
        self.apps[name] = app

    def _record_pids(self) -> None:
        """Remember what we started, so a run after a hard kill can clean up (stop_leftovers)."""
        running = [(name, app.process.pid) for name, app in self.apps.items() if app.process]
        if self.emulator and self.emulator.process:
            running.append(("emulator", self.emulator.process.pid))
        ProcessFile(self.config.layout.process_file).write(running)

    def wait_for_api(self, timeout: float = API_READY_SECONDS) -> None:
        try:
            wait_until_ready(
                self.config.layout.api_url, timeout, check=self._fail_if_exited,
                pause=self.latch.wait,
            )  # fmt: skip
        except TimeoutError:
            log = self.config.layout.log("api")
            raise RuntimeError(
                f"the API did not become ready in {timeout:.0f}s; see {log}"
            ) from None

    def _fail_if_exited(self) -> None:
        """While starting, a child that exits is a configuration problem, not a crash to retry;
        a stop request ends the wait too."""
        if self.latch.requested:
            raise StopRequested(self.latch.reason)
        for name, app in self.apps.items():
            if app.process is not None and app.process.poll() is not None:
                log = self.config.layout.log(name)
                description = exit_description(app.process.returncode)
                raise RuntimeError(f"{name} exited while starting ({description}); see {log}")
        if reason := self.emulator_exit():
            raise RuntimeError(reason)

    def emulator_exit(self) -> str | None:
        process = self.emulator.process if self.emulator else None
        if process is None or process.poll() is None:
            return None
        log = self.config.layout.emulator_log
        if process.returncode == 0:  # someone stopped it: it saved its state first
            return f"the emulator was stopped (exit code 0, state saved); see {log}"
        return (
            f"the emulator exited ({exit_description(process.returncode)}); what it held since "
            f"it started is lost; see {log}"
        )

    def supervise(self, interval: float = 0.5) -> tuple[str, int]:
        """Keep the apps running until a stop request or the emulator's death: (why, exit code)."""
        while not self.latch.requested:
            if reason := self.emulator_exit():
                return reason, 1
            if any(app.check() for app in self.apps.values()):
                self._record_pids()
            self.latch.wait(interval)
        return self.latch.reason, 0

    # -- stopping ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop everything in order within STOP_SECONDS; further signals cannot interrupt it."""
        started = time.monotonic()
        deadline = started + STOP_SECONDS
        apps = [group_stoppable(n, a.process) for n, a in self.apps.items() if a.process]
        if apps:
            say(
                f"stopping the API and {len(apps) - 1} consumers "
                "(consumers finish the batch in hand) ..."
            )
            report = stop_together(
                apps, APPS_STOP_SECONDS, wait=self.latch.wait, say=say,
                hurry=lambda: self.latch.hurry,
            )  # fmt: skip
            say(f"API and consumers stopped ({report.seconds:.1f}s)")
        self.apps.clear()
        if self.emulator is not None and self.emulator.process is not None:
            if reason := self.emulator_exit():
                say(reason)
            else:
                self._let_lambdas_finish(deadline - EMULATOR_STOP_SECONDS)
                self._stop_emulator(max(EMULATOR_STOP_SECONDS, deadline - time.monotonic()))
        ProcessFile(self.config.layout.process_file).remove()
        say(f"stopped in {time.monotonic() - started:.1f}s")

    def _let_lambdas_finish(self, until: float) -> None:
        """Wait (bounded) for the buffer queues to empty: a Lambda batch cut off by the stop
        would come back only after the buffer queue's visibility timeout (180 s)."""
        assert self.emulator is not None
        if not self.outputs or self.latch.hurry:
            return
        waiting = buffered_messages(self.emulator.url, self.outputs)
        if waiting:
            say(f"letting the Lambdas finish the {waiting} events in the buffer queues ...")
        while waiting and time.monotonic() < until and not self.latch.hurry:
            self.latch.wait(0.25)
            waiting = buffered_messages(self.emulator.url, self.outputs)
        if waiting is None:
            say("the emulator does not answer: not waiting for the Lambdas")
        elif waiting:
            say(f"{waiting} events still in the buffer queues; they stay there for the next run")

    def _stop_emulator(self, budget: float) -> None:
        assert self.emulator is not None
        emulator = self.emulator.stoppable()
        assert emulator is not None
        say("stopping the emulator (it saves its state for the next run) ...")
        asked_at = time.time()
        report = stop_together([emulator], budget, wait=self.latch.wait, say=say)
        if self.emulator.saved_since(asked_at):
            where = self.config.layout.emulator_state_dir
            say(f"emulator stopped ({report.seconds:.1f}s); state saved in {where}")
        else:
            say(f"emulator stopped ({report.seconds:.1f}s) WITHOUT saving its state")

    def summary(self) -> str:
        layout = self.config.layout
        assert self.emulator is not None
        custom_keys = Settings().api_keys.get_secret_value()
        key = "(your DATASYNC_API_KEYS)" if custom_keys else LOCAL_API_KEY
        as_shipped = self.emulator_as_shipped is not None
        shipped = "   (MiniStack as shipped: at most 10 per Lambda batch)" if as_shipped else ""
        return "\n".join(
            [
                "",
                "datasync is running",
                f"  API          http://127.0.0.1:{layout.api_port}   (OpenAPI: /openapi.json)",
                f"  API key      {key}",
                f"  emulator     {self.emulator.url}{shipped}",
                f"  event bus    {self.outputs['event_bus_name']}",
                f"  stores       {layout.store_dir}  (SQLite; DATABASE_URL switches to PostgreSQL)",
                f"  logs         {layout.logs_dir}",
                f"  settings     {layout.env_file}",
                f"  metrics      API {self.metrics_url('api')}",
                *(
                    f"               {destination} {self.metrics_url(destination)}"
                    for destination in self.outputs["queue_urls"]
                ),
                "",
                f"  try:  curl -s -X POST http://127.0.0.1:{layout.api_port}/v1/users \\",
                f"          -H 'X-API-Key: {key}' -H 'Content-Type: application/json' \\",
                '          -d \'{"email": "ada@example.com", "name": "Ada", '
                '"marketing_opt_in": true}\'',
                "        .venv/bin/datasync get crm <user_id>     .venv/bin/datasync status",
                "",
                "Ctrl-C (or SIGTERM, SIGHUP) stops everything; the emulator keeps its state",
                "(queued events too) for the next run; `make clean-state` forgets it.",
            ]
        )


def emulator_as_shipped(log: Path) -> str | None:
    """What our entry point said when it left MiniStack as shipped (its event source mappings
    then hand a function at most 10 messages, whatever the Terraform's batch size: slower, and
    the figures of BENCHMARKS.md do not hold), or None when it lifted that limit."""
    if emulator_batch_limit(log) != MINISTACK_BATCH_LIMIT:
        return None
    said = emulator_patch_line(log) or f"our entry point said nothing in {log}"
    return f"{said}; see {log}"


def run_foreground(infra_only: bool = False, fresh: bool = False) -> int:
    """Start the stack, supervise it until a stop request, always stop it in order."""
    latch = StopLatch().install()
    stack = LocalStack(StackConfig.from_environment(), latch=latch)
    started = time.monotonic()
    code = 0
    try:
        stack.start_infra(fresh=fresh)
        if infra_only:
            env_file = stack.config.layout.env_file
            say(f"infrastructure is up; settings in {env_file}. Ctrl-C stops it.")
        else:
            say("starting the API and consumers ...")
            stack.start_apps()
            stack.wait_for_api()
            show(stack.summary())
        say(f"up in {time.monotonic() - started:.1f}s")
        reason, code = stack.supervise()
        say(f"stopping: {reason}")
    except StopRequested as stop:
        say(f"stopping: {stop} while starting")
    except Exception as exc:  # noqa: BLE001 - report, then clean up
        show(f"datasync: error: {exc}", file=sys.stderr)
        code = 1
    finally:
        stack.stop()
    return code
