"""The status page in a real headless browser (Debian's chromium, driven by playwright-core)
against the session stack: log in, watch a number change as events flow, see a dead letter
with its reason, and no script or CSP error on the way. Screenshot: var/test-artifacts/.

The browser is driven by tests/browser/driver.mjs (one JSON command per line); the assertions
and the AWS side stay here. `make test` installs playwright-core into .tools/browser and
chromium from Debian when /usr/bin/chromium is missing (mk/browser.mk).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from datasync.contract import DESTINATIONS
from devstack.paths import ROOT
from tests.conftest import FIXTURES
from tests.flows import unique_email
from tests.pipeline import Pipeline, wait_until

pytestmark = pytest.mark.integration

BROWSER_TOOLS = ROOT / ".tools" / "browser"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = ROOT / "var" / "test-artifacts"
ANSWER_TIMEOUT_SECONDS = 60


class Browser:
    """The driver process: call(op, **args) sends one command and returns its result."""

    def __init__(self, process: subprocess.Popen):
        self.process = process

    def __call__(self, op: str, **args: Any) -> Any:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], ANSWER_TIMEOUT_SECONDS)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            raise AssertionError(
                f"the browser driver did not answer {op!r} (exit {self.process.poll()})"
            )
        answer = json.loads(line)
        if not answer["ok"]:
            raise AssertionError(f"{op} {args}: {answer['error']}")
        return answer["result"]


@pytest.fixture
def browser(tmp_path) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"no chromium at {CHROMIUM}: `apt-get install chromium` (make test does, as root)"
        )
    node = shutil.which("node")
    if not node:
        pytest.skip("no node on PATH to run playwright-core: install nodejs")
    if not (BROWSER_TOOLS / "node_modules" / "playwright-core").is_dir():
        pytest.fail(
            "playwright-core is not installed: run `make test` (it installs .tools/browser)"
        )
    env = {**os.environ, "PLAYWRIGHT_CORE_DIR": str(BROWSER_TOOLS), "CHROMIUM": str(CHROMIUM)}
    stderr = (tmp_path / "driver.log").open("w")
    process = subprocess.Popen(  # noqa: S603 - our own driver script
        [node, str(ROOT / "tests" / "browser" / "driver.mjs")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env,
    )  # fmt: skip
    try:
        yield Browser(process)
    finally:
        if process.poll() is None:
            process.stdin.close()  # the driver closes the browser at the end of its input
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        stderr.close()


def hide_dead_letters(pipeline: Pipeline, destination: str) -> list[str]:
    """Hide the DLQ's earlier dead letters for a while, so that the page's peek (10 at most)
    sees the one this test makes; returns their receipt handles to show them again."""
    sqs, url, handles = pipeline.aws("sqs"), pipeline.dlq_url(destination), []
    for _ in range(50):
        batch = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=180, WaitTimeSeconds=0
        ).get("Messages", [])
        if not batch:
            break
        handles += [m["ReceiptHandle"] for m in batch]
    return handles


def show_again(pipeline: Pipeline, destination: str, handles: list[str]) -> None:
    sqs, url = pipeline.aws("sqs"), pipeline.dlq_url(destination)
    for start in range(0, len(handles), 10):
        sqs.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
                for i, h in enumerate(handles[start : start + 10])
            ],
        )


def remove_dead_letter(pipeline: Pipeline, destination: str, correlation_id: str) -> str:
    """Delete this test's dead letter from the DLQ; returns its failure_reason."""
    sqs, url = pipeline.aws("sqs"), pipeline.dlq_url(destination)
    for message in pipeline.dlq_messages(destination):
        attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
        if attributes.get("correlation_id") == correlation_id:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            return attributes["failure_reason"]
    raise AssertionError(f"dead letter {correlation_id} not in the {destination} DLQ")


def test_the_status_page_in_a_real_browser(browser, pipeline):
    page = f"{pipeline.api_url}/dashboard"

    # Not logged in: the form, not the status.
    assert browser("goto", url=page)["status"] == 401
    assert "API key" in browser("text", selector="#login-form")

    # A wrong key: refused, the form again with the error.
    browser("fill", selector="#api_key", value="not-the-key")
    assert browser("submit", selector="#login-form button")["status"] == 401
    assert "not valid" in browser("text", selector="#login-error")

    # The right key: the page, with the three destinations, and a cookie scripts cannot read.
    browser("fill", selector="#api_key", value=pipeline.api_key)
    answer = browser("submit", selector="#login-form button")
    assert answer["status"] == 200 and answer["url"] == page
    for destination in DESTINATIONS:
        assert browser("text", selector=f"#destination-{destination} h2") == destination
    # The two 401 answers (form, wrong key) are the only console errors so far: no CSP refusal.
    refused = "Failed to load resource: the server responded with a status of 401 (UNAUTHORIZED)"
    assert browser("errors") == [refused, refused]
    [cookie] = browser("cookies")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert pipeline.api_key not in cookie["value"]

    # Events through the API: the applied count of every destination goes up, live.
    applied = '[data-field="applied_total"]'
    before = int(browser("wait_text", selector=f"#destination-crm {applied}", pattern=r"^\d+$"))
    for _ in range(3):
        pipeline.create_user(email=unique_email("dash"), name="Dash Board", marketing_opt_in=True)
    wait_until(
        lambda: int(browser("text", selector=f"#destination-crm {applied}")) >= before + 3,
        timeout=60,
        interval=1,
        what="the crm applied count to rise by 3 on the page",
    )

    # A malformed record on the crm queue: the consumer dead-letters it, the page shows why.
    hidden = hide_dead_letters(pipeline, "crm")
    correlation_id = f"dashboard-{uuid.uuid4().hex[:12]}"
    try:
        pipeline.aws("sqs").send_message(
            QueueUrl=pipeline.queue_url("crm"),
            MessageBody=(FIXTURES / "messages" / "record_not_json.txt").read_text(),
            MessageAttributes={"correlation_id": {"DataType": "String", "StringValue": correlation_id}},
        )  # fmt: skip
        row = browser(
            "wait_text",
            selector="#destination-crm tbody[data-field=failures] tr",
            pattern=correlation_id,
            timeout_ms=90_000,
        )
        dlq = browser("text", selector='#destination-crm [data-queue="dlq"]')
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser("screenshot", path=str(ARTIFACTS / "dashboard.png"))
    finally:
        reason = remove_dead_letter(pipeline, "crm", correlation_id)
        show_again(pipeline, "crm", hidden)
    assert reason and reason[:60] in row, (reason, row)
    assert "consume" in row  # failure_stage
    assert dlq.split()[0] != "unknown" and int(dlq.split()[0]) >= 1, dlq

    # Since the login: nothing refused by the CSP, no script error, no failed poll.
    assert browser("errors") == []
