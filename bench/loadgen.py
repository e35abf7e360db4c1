"""Open-loop load generator for ``POST /v1/users``: ``python -m bench.loadgen ...``.

Open loop: request i is due at ``start + i / rate`` and is sent then, whatever the answers to
earlier requests took; its latency is counted from when it was due, not from when it was sent,
so a slow server cannot hide its queueing behind a generator that waited for it (coordinated
omission). How late each send actually was (``lag``) is recorded too, so a reader can see
whether the generator itself kept up. It runs in a process of its own and reports its own CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.users import user_profiles
from devstack.processes import die_with_parent

Sender = Callable[[int, float], Awaitable[dict[str, Any]]]


def schedule(rate: float, count: int, start: float) -> list[float]:
    """When each of ``count`` requests is due, at a fixed offered ``rate`` per second."""
    if rate <= 0:
        raise ValueError("the offered rate must be positive")
    return [start + i / rate for i in range(count)]


def latency(result: dict[str, Any]) -> float:
    """Seconds from when the request was due (not when it was sent) to its answer."""
    return result["done"] - result["due"]


async def open_loop(
    send: Sender,
    due: list[float],
    clock: Callable[[], float] = time.time,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Start ``send(i, due[i])`` at each due time without waiting for earlier ones to finish."""
    tasks = []
    for i, at in enumerate(due):
        if progress is not None:
            progress(i)
        delay = at - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        lag = max(0.0, clock() - at)
        task = asyncio.create_task(send(i, at))
        task.lag = lag  # type: ignore[attr-defined]
        tasks.append(task)
    results = await asyncio.gather(*tasks)
    for task, result in zip(tasks, results, strict=True):
        started = result.get("started")
        result["lag"] = max(task.lag, started - result["due"]) if started else task.lag  # type: ignore[attr-defined]
    return list(results)


def make_sender(
    session: Any,
    url: str,
    key: str,
    bodies: list[bytes],
    run_id: str,
    timeout: float,
    clock: Callable[[], float] = time.time,
) -> Sender:
    import aiohttp

    request_timeout = aiohttp.ClientTimeout(total=timeout)

    async def send(i: int, due: float) -> dict[str, Any]:
        headers = {
            "X-API-Key": key,
            "Content-Type": "application/json",
            "X-Correlation-ID": f"bench-{run_id}-{i}",
        }
        # When the request really starts (the event loop may run this task a little late).
        result: dict[str, Any] = {
            "i": i,
            "due": due,
            "started": clock(),
            "status": None,
            "event_id": None,
        }
        try:
            async with session.post(
                url, data=bodies[i], headers=headers, timeout=request_timeout
            ) as response:
                payload = await response.read()
                result["status"] = response.status
                if response.status == 202:
                    result["event_id"] = json.loads(payload).get("event_id")
        except TimeoutError:
            result["status"] = "timeout"
        except aiohttp.ClientError as exc:
            result["status"] = f"connection_error:{type(exc).__name__}"
        result["done"] = clock()
        return result

    return send


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(args: argparse.Namespace, cpu: dict[str, float]) -> list[dict[str, Any]]:
    import aiohttp

    count = int(args.rate * args.seconds)
    bodies = [json.dumps(p).encode() for p in user_profiles(args.seed, count)]
    connector = aiohttp.TCPConnector(
        limit=args.max_connections, limit_per_host=args.max_connections
    )
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
        send = make_sender(
            session, args.url.rstrip("/") + "/v1/users", args.key, bodies, args.run_id, args.timeout
        )
        start = max(args.start_at, time.time())
        state = {"sent": 0, "done": 0, "ok": 0, "next": 0.0}

        def progress(sent: int) -> None:
            state["sent"] = sent
            if time.time() >= state["next"]:  # one status line a second for the progress line
                state["next"] = time.time() + 1
                print(
                    json.dumps({"sent": sent, "done": state["done"], "ok": state["ok"]}), flush=True
                )

        async def counted(i: int, due: float) -> dict[str, Any]:
            result = await send(i, due)
            state["done"] += 1
            state["ok"] += result["status"] == 202
            return result

        cpu["setup"] = cpu_seconds()  # imports and request bodies: not part of sending
        return await open_loop(counted, schedule(args.rate, count, start), progress=progress)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="open-loop POST /v1/users load")
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--run-id", default="run")
    parser.add_argument("--start-at", type=float, default=0.0, help="epoch seconds of request 0")
    parser.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    parser.add_argument("--max-connections", type=int, default=512)
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one per request")
    args = parser.parse_args(argv)
    die_with_parent()
    cpu: dict[str, float] = {}
    results = asyncio.run(run(args, cpu))
    total = cpu_seconds()
    summary = {
        "cpu_seconds": total,
        "sending_cpu_seconds": total - cpu.get("setup", 0.0),
        "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }
    with args.out.open("w") as out:
        for result in results:
            out.write(json.dumps(result) + "\n")
        out.write(json.dumps({"summary": summary}) + "\n")


if __name__ == "__main__":
    main()
