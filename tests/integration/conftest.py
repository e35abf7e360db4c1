"""One real stack per test session: MiniStack, `terraform apply`, API and consumers.

The stack is what `make run` starts, on free ports in a temp directory, so it never
collides with a running `make run`. Applying Terraform takes about a minute (the AWS
provider waits for SQS queues to settle), hence once per session.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from datasync.contract.records import DESTINATIONS
from datasync.local_layout import Layout
from datasync.settings import LOCAL_API_KEY
from devstack.local_stack import LocalStack, StackConfig
from devstack.paths import ROOT
from devstack.settings import stack_settings
from tests.pipeline import Pipeline, free_port, supervise

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
    """A throwaway PostgreSQL server on 127.0.0.1 (initdb + pg_ctl), stopped at session end."""
    initdb = _pg_binary("initdb")
    pg_ctl = _pg_binary("pg_ctl")
    data = tmp_path_factory.mktemp("pgdata")
    port = free_port()
    run_as = _unprivileged_prefix(data)
    subprocess.run(
        [*run_as, initdb, "-D", str(data), "-U", "datasync", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    log = data / "server.log"
    subprocess.run(
        [*run_as, pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "30", "-o",
         f"-h 127.0.0.1 -p {port} -k {data} -c fsync=off", "start"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield f"postgresql://datasync@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )


def _pg_binary(name: str) -> str:
    import shutil

    found = shutil.which(name) or next(
        iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None
    )
    if not found:
        pytest.fail(
            f"{name} not found: install the PostgreSQL server (e.g. apt-get install postgresql)"
        )
    return str(found)


def _unprivileged_prefix(data: Path) -> list[str]:
    """PostgreSQL refuses to run as root: use a throwaway user's identity when we are root."""
    if os.geteuid() != 0:
        return []
    import pwd

    user = "nobody"
    pwd.getpwnam(user)
    os.chmod(data, 0o700)
    os.chown(data, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
    for parent in data.parents:  # let the user reach its data directory
        if parent == Path("/"):
            break
        os.chmod(parent, os.stat(parent).st_mode | 0o011)
    return [
        "setpriv",
        f"--reuid={user}",
        f"--regid={pwd.getpwnam(user).pw_gid}",
        "--clear-groups",
        "--",
    ]
