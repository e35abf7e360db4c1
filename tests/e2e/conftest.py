"""`make e2e`: the end-to-end flows against a deployed pipeline.

E2E_TARGET=local (default): the stack of a running `make run` (found through
var/local/datasync.env and its API answering /readyz); when none is running, one is
started for the session and stopped afterwards.
E2E_TARGET=kind: the API and consumers on a kind cluster (`make kind-up`, `skaffold run`),
with the emulator on the host; see docs/kubernetes.md.
"""

from __future__ import annotations

import os

import pytest

from datasync.local_layout import LOCAL_API_KEY, api_ready, read_env_file
from devstack.local_stack import LocalStack, StackConfig
from tests.pipeline import Pipeline


@pytest.fixture(scope="session")
def pipeline():
    target = os.environ.get("E2E_TARGET", "local")
    api_key = os.environ.get("DATASYNC_API_KEYS", LOCAL_API_KEY).split(",")[0]
    config = StackConfig.from_environment()
    if target == "kind":
        from tests.e2e.kind_target import kind_target

        cluster = kind_target()
        env = read_env_file(config.layout.env_file)
        env.pop("DATASYNC_STORE_DIR", None)
        env["DATABASE_URL"] = cluster["database_url"]
        yield Pipeline(cluster["api_url"], cluster.get("api_key", api_key), env)
        return
    if target != "local":
        pytest.fail(f"E2E_TARGET must be 'local' or 'kind', not {target!r}")

    api_url = config.layout.api_url
    if config.layout.env_file.is_file() and api_ready(api_url):
        print(f"\ne2e: using the running stack at {api_url}")
        yield Pipeline(api_url, api_key, read_env_file(config.layout.env_file))
        return
    print("\ne2e: no running stack found; starting one (about a minute)")
    stack = LocalStack(config)
    try:
        stack.start_infra()
        stack.start_apps()
        stack.wait_for_api()
        yield Pipeline(api_url, api_key, stack.app_environment())
    finally:
        stack.stop()
