"""The API on its own: ``python -m bench.api_alone`` (``make bench-api``).

Two figures the pipeline benchmark cannot isolate:

- **CPU per request**: the checkout's gunicorn (its config, its worker class) takes
  ``POST /v1/users`` at a fixed open-loop rate (bench/loadgen.py, a process of its own) and
  publishes to a fake EventBridge in this process that accepts every entry at once. The CPU of
  gunicorn's master and workers (/proc) over the window, divided by the requests answered, is
  what the API itself costs per request: parsing, validation, logging, the SDK's client side.
- **Idle sockets**: ``--idle`` connections are opened and left silent; then a real POST is
  timed, and how long the server keeps one of the silent connections open before closing it.

Workers and threads are the project's defaults unless ``--workers`` / ``--threads`` say
otherwise (the chart's are 2 x 4). Everything binds 127.0.0.1 and stops with the tool.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.config import TOOL_ROOT, described, env_default
from bench.processes import die_with_parent, read_stat
from bench.stack import free_port
from bench.stats import percentile

BUS_NAME = "datasync-bus"


class FakeEventBridge(BaseHTTPRequestHandler):
    """PutEvents accepts every entry; DescribeEventBus answers (the API's readiness probe)."""

    protocol_version = "HTTP/1.1"  # keep-alive: the SDK pools its connections as on AWS
    disable_nagle_algorithm = True  # head and body leave at once, not 40 ms apart

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        target = self.headers.get("X-Amz-Target", "")
        if target.endswith(".PutEvents"):
            entries = body.get("Entries", [])
            answer = {
                "FailedEntryCount": 0,
                "Entries": [{"EventId": secrets.token_hex(8)} for _ in entries],
            }
        else:
            answer = {"Name": BUS_NAME, "Arn": f"arn:aws:events:us-east-1:0:event-bus/{BUS_NAME}"}
        payload = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass


@contextlib.contextmanager
def fake_bus() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeEventBridge)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def api(repo: Path, bus_url: str, key: str, args: argparse.Namespace, log: Path) -> Iterator[Any]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATASYNC_", "AWS_"))},
        "DATASYNC_ENV": "aws",
        "DATASYNC_ENV_FILE": os.devnull,
        "DATASYNC_API_KEYS": key,
        "DATASYNC_EVENT_BUS_NAME": BUS_NAME,
        "DATASYNC_API_METRICS_PORT": "0",
        "AWS_ENDPOINT_URL": bus_url,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
    }
    if args.workers:
        env["GUNICORN_WORKERS"] = str(args.workers)
    if args.threads:
        env["GUNICORN_THREADS"] = str(args.threads)
    gunicorn = repo / ".venv" / "bin" / "gunicorn"
    if not gunicorn.exists():
        raise SystemExit(f"{gunicorn} not found: run `make tools` in {repo} first")
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - the checkout's own server
            [gunicorn, "--config", "python:apps.api.gunicorn_conf", "apps.api.wsgi:app"],
            cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )  # fmt: skip
    process.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    try:
        deadline = time.monotonic() + 30
        while not _healthy(process.url):  # type: ignore[attr-defined]
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the API did not start; see {log}")
            time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as response:  # noqa: S310
            return response.status == 200
    except OSError:
        return False


def tree_cpu_seconds(root: int) -> float:
    """utime + stime of ``root`` and its children (gunicorn's master and workers)."""
    children = Path(f"/proc/{root}/task/{root}/children")
    pids = [root, *(int(p) for p in children.read_text().split())] if children.exists() else [root]
    return sum(stat.cpu_seconds for pid in pids if (stat := read_stat(pid)) is not None)


def load(url: str, key: str, rate: float, seconds: float, out: Path) -> list[dict[str, Any]]:
    """bench/loadgen.py at ``rate`` for ``seconds``: one result per request, then its summary."""
    subprocess.run(  # noqa: S603 - our own module
        [sys.executable, "-m", "bench.loadgen", "--url", url, "--key", key, "--rate", str(rate),
         "--seconds", str(seconds), "--timeout", "10", "--out", str(out)],
        cwd=TOOL_ROOT, check=True, stdout=subprocess.DEVNULL, timeout=seconds + 120,
    )  # fmt: skip
    return [json.loads(line) for line in out.read_text().splitlines()]


def measure_cpu(process: Any, key: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    load(process.url, key, args.rate, args.warmup, work / "warmup.jsonl")
    before = tree_cpu_seconds(process.pid)
    results = load(process.url, key, args.rate, args.seconds, work / "load.jsonl")
    used = tree_cpu_seconds(process.pid) - before
    summary = results.pop()["summary"]
    answered = [r for r in results if isinstance(r["status"], int)]
    latencies = sorted(r["done"] - r["due"] for r in answered)
    statuses: dict[str, int] = {}
    for r in results:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    return {
        "rate": args.rate,
        "seconds": args.seconds,
        "requests": len(results),
        "statuses": statuses,
        "api_cpu_seconds": round(used, 3),
        "api_cpu_ms_per_request": round(1000 * used / max(1, len(answered)), 3),
        "latency_ms": {
            f"p{q}": round(1000 * (percentile(latencies, q) or 0), 1) for q in (50, 95, 99)
        },
        "generator_cpu_ms_per_request": round(
            1000 * summary["sending_cpu_seconds"] / max(1, len(results)), 3
        ),
    }


def post(url: str, key: str, timeout: float = 15.0) -> tuple[int | str, float]:
    body = json.dumps({"email": f"idle-{secrets.token_hex(4)}@example.com", "name": "Idle"})
    request = urllib.request.Request(  # noqa: S310 - loopback
        url + "/v1/users", data=body.encode(), method="POST",
        headers={"X-API-Key": key, "Content-Type": "application/json"},
    )  # fmt: skip
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status: int | str = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError as error:
        status = type(error).__name__
    return status, time.monotonic() - started


def seconds_until_closed(url: str, limit: float) -> float | None:
    """How long the server keeps a new, silent connection open (None: still open at ``limit``)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        started = time.monotonic()
        sock.settimeout(limit)
        try:
            sock.recv(1)  # b"" (closed) or the first byte of an answer: the server let go
        except TimeoutError:
            return None
        except OSError:
            pass
        return time.monotonic() - started


def measure_idle(process: Any, key: str, count: int) -> dict[str, Any]:
    host, port = process.url.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port))) for _ in range(count)]
    try:
        time.sleep(0.3)  # the server has accepted them all
        posts = [post(process.url, key) for _ in range(5)]
        closed = seconds_until_closed(process.url, 15)
        return {
            "idle_sockets": count,
            "post_status": sorted({str(s) for s, _ in posts}),
            "post_seconds_max": round(max(t for _, t in posts), 3),
            "post_seconds": [round(t, 3) for _, t in posts],
            "silent_connection_closed_after_seconds": None if closed is None else round(closed, 2),
        }
    finally:
        for sock in idle:
            sock.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.api_alone", description=__doc__.split("\n")[0]
    )
    p.add_argument(
        "--repo", type=Path, default=Path(env_default("BENCH_REPO")), help=described("BENCH_REPO")
    )
    p.add_argument(
        "--rate", type=float, default=float(env_default("BENCH_RATE")), help=described("BENCH_RATE")
    )
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--warmup", type=float, default=3)
    p.add_argument("--workers", type=int, default=0, help="GUNICORN_WORKERS (0: the default)")
    p.add_argument("--threads", type=int, default=0, help="GUNICORN_THREADS (0: the default)")
    p.add_argument("--idle", type=int, default=200, help="silent connections (0: skip)")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    repo = args.repo.resolve()
    key = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp, fake_bus() as bus:
        work = Path(tmp)
        with api(repo, bus, key, args, work / "api.log") as process:
            result: dict[str, Any] = {"repo": str(repo), "workers": args.workers or "default",
                                      "threads": args.threads or "default"}  # fmt: skip
            print(f"load: {args.rate:g} req/s for {args.seconds:g} s ...", flush=True)
            result["load"] = measure_cpu(process, key, args, work)
            if args.idle:
                print(f"{args.idle} silent connections, then a POST ...", flush=True)
                result["idle"] = measure_idle(process, key, args.idle)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
