"""One real stack per test session: MiniStack, `terraform apply`, API and consumers.

The stack is what `make run` starts, on free ports in a temp directory, so it never
collides with a running `make run`. Applying Terraform takes about a minute (the AWS
provider waits for SQS queues to settle), hence once per session.
"""

from __future__ import annotations

import os
import time

import pytest

from apps.cli.local_stack import LocalStack, StackConfig
from apps.cli.paths import ROOT
from apps.cli.settings import cli_settings
from datasync.settings import LOCAL_API_KEY
from tests.pipeline import Pipeline, free_port, supervise
from tests.postgres import running_postgres

APPS_BACK_SECONDS = 45  # the supervisor's restart backoff is capped at 30 s


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    if not (cli_settings().ministack_venv / "bin" / "ministack").exists():
        pytest.fail("MiniStack is not installed: run `make test` (it installs .tools/ministack)")
    config = StackConfig(
        var_dir=tmp_path_factory.mktemp("stack"),
        emulator_port=free_port(),
        api_port=free_port(),
        stream_terraform=False,
        build_dir=ROOT / "var" / "build",
    )
    stack = LocalStack(config)
    try:
        stack.start_infra()
        with pytest.MonkeyPatch.context() as env:
            # Every test reaches the API from 127.0.0.1, and some send thousands of wrong keys
            # on purpose (schemathesis's authentication checks expect 401 each time): the
            # failed-authentication limit would turn the rest of the session's answers into
            # 429s. tests/unit/test_api.py and test_dashboard.py test that limit.
            env.setenv("DATASYNC_API_AUTH_FAILURES_PER_MINUTE", "0")
            stack.start_apps()
        stack.wait_for_api()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(autouse=True)
def _every_app_running(request):
    """Each test starts with every app of the session stack running, whatever the test before
    it killed: a fault test that fails half-way must not take the tests after it down too."""
    if "stack" not in request.fixturenames:
        return
    stack = request.getfixturevalue("stack")
    deadline = time.monotonic() + APPS_BACK_SECONDS
    while not all(app.running for app in stack.apps.values()):
        if time.monotonic() > deadline:
            down = sorted(name for name, app in stack.apps.items() if not app.running)
            pytest.fail(f"{down} not running again {APPS_BACK_SECONDS}s after the test before")
        supervise(stack)
        time.sleep(0.1)


@pytest.fixture(scope="session")
def pipeline(stack) -> Pipeline:
    return Pipeline(
        api_url=f"http://127.0.0.1:{stack.config.api_port}",
        api_key=os.environ.get("DATASYNC_API_KEYS", LOCAL_API_KEY).split(",")[0],
        env=stack.app_environment(),
    )


@pytest.fixture
def cli(pipeline, stack, monkeypatch, tmp_path):
    """`datasync` (apps.cli.main.main) with the session stack's settings, var dir and API."""
    from apps.cli.main import main

    for name, value in pipeline.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATASYNC_ENV_FILE", str(tmp_path / "none.env"))
    monkeypatch.setenv("DATASYNC_VAR_DIR", str(stack.config.var_dir))
    monkeypatch.setenv("DATASYNC_API_URL", pipeline.api_url)
    return main


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    """A throwaway PostgreSQL server on 127.0.0.1 (initdb + pg_ctl), stopped at session end.
    Without PostgreSQL's server binaries it errors with what to install."""
    with running_postgres(tmp_path_factory.mktemp("pgdata")) as server:
        yield server.url
