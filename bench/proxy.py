"""The call-counting proxy of the accounting pass: ``python -m bench.proxy --port N``.

Every client of the accounting stack (the API, the consumers, and - through MiniStack's
environment, which its Lambda workers inherit - the Lambda handlers) gets
``HTTP_PROXY=http://127.0.0.1:N``; botocore then sends each request here in absolute form,
and this forwards it unchanged to the emulator on 127.0.0.1 and counts it by service,
operation and calling process kind (found from the connection's peer port in /proc).
``GET /_bench/snapshot`` returns the cumulative counts; the orchestrator diffs two snapshots.

What it cannot see: what the emulator does inside its own process (EventBridge delivering to
the buffer queues, the event source mapping polling them and invoking the Lambdas). The cost
model accounts for those from the counted calls (bench/cost.py).

It only forwards to loopback addresses, binds 127.0.0.1 and stops itself after --lifetime.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web

from bench.calls import Call, classify
from bench.processes import classify_cmdline
from devstack.processes import die_with_parent, read_cmdline

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
}
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


class Counts:
    def __init__(self) -> None:
        self.by_key: dict[tuple[str, str, str], dict[str, int]] = defaultdict(
            lambda: {"calls": 0, "entries": 0, "billed_units": 0, "payload_bytes": 0, "errors": 0}
        )

    def add(self, call: Call, caller: str, error: bool) -> None:
        row = self.by_key[(call.service, call.operation, caller)]
        row["calls"] += 1
        row["entries"] += call.entries
        row["billed_units"] += call.billed_units
        row["payload_bytes"] += call.payload_bytes
        row["errors"] += int(error)

    def snapshot(self) -> list[dict[str, Any]]:
        return [
            {"service": s, "operation": o, "caller": c, **row}
            for (s, o, c), row in sorted(self.by_key.items())
        ]


class CallerLookup:
    """The kind of process behind a client connection, from its ports (Linux /proc)."""

    def __init__(self) -> None:
        self.cache: dict[tuple[int, int], str] = {}

    def kind(self, peer_port: int, proxy_port: int) -> str:
        key = (peer_port, proxy_port)
        if key not in self.cache:
            self.cache[key] = self._lookup(peer_port, proxy_port)
        return self.cache[key]

    @staticmethod
    def _lookup(peer_port: int, proxy_port: int) -> str:
        inode = _socket_inode(peer_port, proxy_port)
        pid = _pid_of_socket(inode) if inode else None
        if pid is None:
            return "unknown"
        return classify_cmdline(read_cmdline(pid)) or "other"


def _socket_inode(local_port: int, remote_port: int) -> str | None:
    wanted = (f"{local_port:04X}", f"{remote_port:04X}")
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if (fields[1].rsplit(":", 1)[1], fields[2].rsplit(":", 1)[1]) == wanted:
                return fields[9]
    return None


def _pid_of_socket(inode: str) -> int | None:
    target = f"socket:[{inode}]"
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            for fd in os.scandir(f"/proc/{name}/fd"):
                if os.readlink(fd.path) == target:
                    return int(name)
        except OSError:
            continue
    return None


def build_app(counts: Counts, lookup: CallerLookup) -> web.Application:
    session: dict[str, ClientSession] = {}

    async def start(_app: web.Application) -> None:
        session["client"] = ClientSession(
            connector=TCPConnector(limit=0, force_close=False),
            timeout=ClientTimeout(total=None, sock_read=90),  # long polls wait up to 20 s
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
        )

    async def stop(_app: web.Application) -> None:
        await session["client"].close()

    async def handle(request: web.Request) -> web.StreamResponse:
        # A proxied request names its target in absolute form; one to the proxy itself does not.
        if request.raw_path.startswith("/"):
            if request.path == "/_bench/snapshot":
                return web.json_response({"time": time.time(), "counts": counts.snapshot()})
            return web.Response(status=404, text="only GET /_bench/snapshot is served here\n")
        return await forward(request)

    async def forward(request: web.Request) -> web.StreamResponse:
        url = request.url
        if url.host not in LOOPBACK:
            return web.Response(status=403, text="this proxy forwards only to 127.0.0.1\n")
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        transport = request.transport
        peer = transport.get_extra_info("peername") if transport else None
        own = transport.get_extra_info("sockname") if transport else None
        caller = (
            await asyncio.to_thread(lookup.kind, peer[1], own[1]) if peer and own else "unknown"
        )
        try:
            async with session["client"].request(
                request.method, url, headers=headers, data=body, allow_redirects=False
            ) as upstream:
                payload = await upstream.read()
                out_headers = {
                    k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP
                }
                status = upstream.status
        except ClientError as exc:  # e.g. a health check before the emulator listens
            return web.Response(status=502, text=f"upstream unreachable: {type(exc).__name__}\n")
        call = classify(request.method, request.path_qs, dict(request.headers), body, len(payload))
        counts.add(call, caller, error=status >= 400)
        return web.Response(status=status, body=payload, headers=out_headers)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def serve(port: int, lifetime: float) -> None:
    counts = Counts()
    runner = web.AppRunner(build_app(counts, CallerLookup()), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        await asyncio.sleep(lifetime)
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="call-counting HTTP proxy (accounting pass)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--lifetime", type=float, default=3600, help="stop after this long")
    args = parser.parse_args(argv)
    die_with_parent()
    asyncio.run(serve(args.port, args.lifetime))


if __name__ == "__main__":
    main()
