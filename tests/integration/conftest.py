"""One real stack per test session: MiniStack, `terraform apply`, API and consumers.

The stack is what `make run` starts, on free ports in a temp directory, so it never
collides with a running `make run`. Applying Terraform takes about a minute (the AWS
provider waits for SQS queues to settle), hence once per session.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from datasync.contract.records import DESTINATIONS
from datasync.local_layout import Layout
from datasync.settings import LOCAL_API_KEY
from devstack.local_stack import LocalStack, StackConfig
from devstack.paths import ROOT
from devstack.settings import stack_settings
from tests.pipeline import Pipeline, free_port, supervise
from tests.postgres import running_postgres

APPS_BACK_SECONDS = 45  # the supervisor's restart backoff is capped at 30 s


@pytest.fixture(scope="session")
def workload_role_arns() -> dict:
    """The roles the session stack's queue policies name besides the functions' own, as a
    deployment passes them (consumer_principal_arns, operator_principal_arns). MiniStack without
    AUTH=true enforces nothing; test_iam_enforcement.py creates these roles where it does."""
    role = "arn:aws:iam::000000000000:role/"  # MiniStack's account for the "test" keys
    return {
        "consumers": {d: [f"{role}datasync-consumer-{d}"] for d in DESTINATIONS},
        "operators": [f"{role}datasync-operator"],
    }


@pytest.fixture(scope="session")
def stack(tmp_path_factory, workload_role_arns):
    if not (stack_settings().ministack_venv / "bin" / "ministack").exists():
        pytest.fail("MiniStack is not installed: run `make test` (it installs .tools/ministack)")
    layout = Layout(
        tmp_path_factory.mktemp("stack"), api_port=free_port(), emulator_port=free_port()
    )
    config = StackConfig(
        layout,
        stream_terraform=False,
        build_dir=ROOT / "var" / "build",
    )
    stack = LocalStack(config)
    try:
        roles = workload_role_arns
        with pytest.MonkeyPatch.context() as env:  # Terraform reads TF_VAR_* from its environment
            env.setenv("TF_VAR_consumer_principal_arns", json.dumps(roles["consumers"]))
            env.setenv("TF_VAR_operator_principal_arns", json.dumps(roles["operators"]))
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
        api_url=f"http://127.0.0.1:{stack.config.layout.api_port}",
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
    monkeypatch.setenv("DATASYNC_VAR_DIR", str(stack.config.layout.var_dir))
    monkeypatch.setenv("DATASYNC_API_URL", pipeline.api_url)
    return main


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    """A throwaway PostgreSQL server on 127.0.0.1 (initdb + pg_ctl), stopped at session end.
    Without PostgreSQL's server binaries it errors with what to install."""
    with running_postgres(tmp_path_factory.mktemp("pgdata")) as server:
        yield server.url
