"""An experiment, not the benchmark: how much of the emulator the fan-out topology costs.

`make bench-topology` starts a stack of its own (for the Lambda package and the functions'
settings) and then, on its emulator, measures bursts through two topologies side by side with
the emulator's ceiling (bench/ceiling.py):

- ``per_destination`` (what Terraform builds today): a rule and a buffer queue per destination,
  each drained by its own function (``lambdas.handler.handle``);
- ``one_buffer``: one rule and one buffer queue for every destination, drained by one function
  that runs the three destinations' processors on each batch (a prototype, written below).

Both run the pipeline's real Lambda code and send packs to three destination queues of their
own, which plain drainers empty (receive + delete, counting the records in each pack), so
neither pays for the consumers or the stores. What differs is only the emulator work of the
fan-out. Results go to ``--out`` as JSON (every burst, and each topology's ratio to the
ceiling measured just before it); BENCHMARKS.md reads them.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import sys
import time
import uuid
import zipfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from bench.aws import client
from bench.bus import BusPutter
from bench.ceiling import Ceiling, drain
from bench.config import RESULTS_DIR
from bench.lambdas import pipeline_functions
from bench.monitor import ProcessSampler
from bench.stack import start_stack
from bench.users import SOURCE, bus_entries

DESTINATIONS = ("analytics", "crm", "marketing")
DRAIN_THREADS = 4
WARM_UP_EVENTS = 200

# The one-buffer prototype's handler (bench/one_buffer_handler.py), added to a copy of the stack's
# Lambda package: it runs in the emulator's Lambda workers on that package's code, never here.
ONE_BUFFER_HANDLER = Path(__file__).with_name("one_buffer_handler.py")


def say(message: str) -> None:
    print(f"bench-topology: {message}", file=sys.stderr, flush=True)


def records_in(message: dict[str, Any]) -> int:
    """The records a destination queue message (a record pack) carries."""
    return len(json.loads(message["Body"])["records"])


class Topology:
    """One topology's resources on the emulator, deleted on exit."""

    def __init__(
        self, env: dict[str, str], kind: str, function: dict[str, Any], concurrency: int
    ) -> None:
        self.env, self.kind, self.function, self.concurrency = env, kind, function, concurrency
        self.events = client("events", env)
        self.sqs = client("sqs", env)
        self.lambdas = client("lambda", env)
        self.name = f"topology-{kind.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
        self.destination_queues: dict[str, str] = {}
        self._undo: list[Callable[[], object]] = []

    def __enter__(self) -> Topology:
        self.events.create_event_bus(Name=self.name)
        self._undo.append(lambda: self.events.delete_event_bus(Name=self.name))
        dead_letters = {}
        for destination in DESTINATIONS:
            self.destination_queues[destination] = self._queue(f"out-{destination}")[0]
            dead_letters[destination] = self._queue(f"dlq-{destination}")[0]
        variables = dict(self.function["variables"])
        if self.kind == "per_destination":
            for destination in DESTINATIONS:
                buffer_arn = self._queue(f"buffer-{destination}", VisibilityTimeout=180)[1]
                self._rule(destination, buffer_arn)
                own = {
                    "DATASYNC_DESTINATION": destination,
                    "DATASYNC_DESTINATION_QUEUE_URL": self.destination_queues[destination],
                    "DATASYNC_DEAD_LETTER_QUEUE_URL": dead_letters[destination],
                }
                self._function(destination, "lambdas.handler.handle", variables | own, buffer_arn)
        else:
            buffer_arn = self._queue("buffer", VisibilityTimeout=180)[1]
            self._rule("all", buffer_arn)
            targets = {d: [self.destination_queues[d], dead_letters[d]] for d in DESTINATIONS}
            # LambdaConfig wants the per-destination names; the handler overrides them.
            own = {
                "DATASYNC_DESTINATION": DESTINATIONS[0],
                "DATASYNC_DESTINATION_QUEUE_URL": "unused",
                "DATASYNC_DEAD_LETTER_QUEUE_URL": "unused",
                "TOPOLOGY_TARGETS": json.dumps(targets),
            }
            self._function("all", "topology_one_buffer.handle", variables | own, buffer_arn)
        return self

    def __exit__(self, *_exc: object) -> None:
        for undo in reversed(self._undo):
            try:
                undo()
            except Exception:  # noqa: BLE001, S110 - best effort: the emulator is thrown away
                pass

    def _queue(self, suffix: str, **attributes: int) -> tuple[str, str]:
        url = self.sqs.create_queue(
            QueueName=f"{self.name}-{suffix}",
            Attributes={key: str(value) for key, value in attributes.items()},
        )["QueueUrl"]
        self._undo.append(lambda: self.sqs.delete_queue(QueueUrl=url))
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return url, arn["Attributes"]["QueueArn"]

    def _rule(self, suffix: str, queue_arn: str) -> None:
        rule, bus = f"{self.name}-{suffix}", self.name
        pattern = json.dumps({"source": [SOURCE]})
        self.events.put_rule(Name=rule, EventBusName=bus, EventPattern=pattern)
        self.events.put_targets(
            Rule=rule, EventBusName=bus, Targets=[{"Id": "q", "Arn": queue_arn}]
        )
        self._undo.append(lambda: self.events.delete_rule(Name=rule, EventBusName=bus))
        self._undo.append(
            lambda: self.events.remove_targets(Rule=rule, EventBusName=bus, Ids=["q"])
        )

    def _function(
        self, suffix: str, handler: str, variables: dict[str, str], buffer_arn: str
    ) -> None:
        name = f"{self.name}-{suffix}"
        created = self.lambdas.create_function(
            FunctionName=name,
            Runtime=self.function["runtime"],
            Role=self.function["role"],
            Handler=handler,
            Code={"ZipFile": self.function["zip"]},
            Timeout=30,
            MemorySize=256,
            Environment={"Variables": variables},
        )
        self._undo.append(lambda: self.lambdas.delete_function(FunctionName=name))
        mapping = self.function["mapping"]
        esm = self.lambdas.create_event_source_mapping(
            EventSourceArn=buffer_arn,
            FunctionName=created["FunctionArn"],
            BatchSize=mapping["BatchSize"],
            MaximumBatchingWindowInSeconds=mapping.get("MaximumBatchingWindowInSeconds", 0),
            FunctionResponseTypes=["ReportBatchItemFailures"],
            ScalingConfig={"MaximumConcurrency": self.concurrency},
        )
        self._undo.append(lambda: self.lambdas.delete_event_source_mapping(UUID=esm["UUID"]))

    def burst(self, count: int, seed: int, timeout: float) -> dict[str, Any]:
        entries = bus_entries(seed, count, self.name, run_id=self.name)
        deadline = time.time() + timeout
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(len(DESTINATIONS), mp_context=context) as pool:
            futures = [
                pool.submit(drain, self.env, url, count, DRAIN_THREADS, deadline, records_in)
                for url in self.destination_queues.values()
            ]
            time.sleep(1.5)  # the drainers reach their first long poll
            put = BusPutter(self.events).burst(entries)
            drained = [future.result() for future in futures]
        seconds = (max(d["last"] for d in drained) or time.time()) - put.started
        complete = min(d["count"] for d in drained)
        return {
            "events": count,
            "seconds": round(seconds, 2),
            "events_per_second": round(complete / seconds, 1) if seconds > 0 else 0.0,
            "records_per_destination": [d["count"] for d in drained],
            "packs_per_destination": [d["messages"] for d in drained],
            "failed_puts": len(put.failed),
        }


def package_with_prototype(build_dir: Path) -> bytes:
    """The newest Lambda package `datasync up` built, plus the one-buffer handler."""
    source = max(build_dir.rglob("*.zip"), key=lambda path: path.stat().st_mtime)
    out = io.BytesIO()
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item.filename))
        dst.writestr("topology_one_buffer.py", ONE_BUFFER_HANDLER.read_text())
    return out.getvalue()


def pipeline_function(env: dict[str, str], build_dir: Path) -> dict[str, Any]:
    """What the stack's analytics function runs with (package, role, settings, mapping)."""
    lambdas = client("lambda", env)
    analytics = next(
        f
        for f in pipeline_functions(lambdas)
        if f["Environment"]["Variables"].get("DATASYNC_DESTINATION") == "analytics"
    )
    own = {"DATASYNC_DESTINATION", "DATASYNC_DESTINATION_QUEUE_URL"}
    own |= {"DATASYNC_DEAD_LETTER_QUEUE_URL", "DATASYNC_BUFFER_QUEUE_URL"}
    variables = analytics["Environment"]["Variables"]
    mappings = lambdas.list_event_source_mappings(FunctionName=analytics["FunctionName"])
    return {
        "runtime": analytics["Runtime"],
        "role": analytics["Role"],
        "variables": {k: v for k, v in variables.items() if k not in own},
        "mapping": mappings["EventSourceMappings"][0],
        "zip": package_with_prototype(build_dir),
    }


def measure(
    sampler: ProcessSampler, size: int, run: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    sampler.sample()
    result = run()
    cpu = sampler.sample()
    result["cpu_ms_per_event"] = {kind: round(s * 1000 / size, 3) for kind, s in cpu.items()}
    return result


def with_ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each topology's burst beside the ceiling measured just before it (same round, size)."""
    ceilings = {(r["round"], r["size"]): r for r in results if r["variant"] == "ceiling"}
    rows = []
    for result in results:
        ceiling = ceilings.get((result["round"], result["size"]))
        if result["variant"] == "ceiling" or not ceiling or not ceiling["events_per_second"]:
            continue
        rows.append(
            {
                "variant": result["variant"],
                "concurrency": result["concurrency"],
                "size": result["size"],
                "events_per_second": result["events_per_second"],
                "ceiling_events_per_second": ceiling["events_per_second"],
                "ratio": round(result["events_per_second"] / ceiling["events_per_second"], 2),
                "emulator_ms_per_event": result["cpu_ms_per_event"].get("ministack"),
                "ceiling_emulator_ms_per_event": ceiling["cpu_ms_per_event"].get("ministack"),
            }
        )
    return rows


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.topology", description=__doc__)
    parser.add_argument("--repo", type=Path, default=Path("."))
    parser.add_argument("--sizes", default="2000,6000,20000", help="burst sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--one-buffer-concurrency",
        default="3,9",
        help="batches in flight on the one mapping (the stack has 3 per destination: 9)",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per burst")
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS_DIR / "topology.json",
        help="where the results go (default under var/bench, which git ignores)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    one_buffer = [int(c) for c in args.one_buffer_concurrency.split(",")]
    var = args.repo.resolve() / "var" / "bench-topology"
    stack = start_stack(args.repo.resolve(), var / "stack", build_dir=var / "build", say=say)
    results: list[dict[str, Any]] = []
    try:
        function = pipeline_function(stack.env, var / "build")
        per_destination = (function["mapping"].get("ScalingConfig") or {}).get(
            "MaximumConcurrency", 3
        )
        variants = [("per_destination", per_destination)]
        variants += [("one_buffer", c) for c in one_buffer]
        sampler = ProcessSampler(groups=stack.process_groups, own={})
        sampler.sample()
        seed = 100
        for round_ in range(args.rounds):
            for size in sizes:
                seed += 1
                with Ceiling(stack.env) as ceiling:
                    run = partial(ceiling.run, size, seed, args.timeout)
                    result = measure(sampler, size, lambda r=run: r().as_dict())
                results.append({"variant": "ceiling", "round": round_, "size": size} | result)
                say(json.dumps(results[-1]))
                for kind, concurrency in variants:
                    with Topology(stack.env, kind, function, concurrency) as topology:
                        seed += 2
                        warm = topology.burst(WARM_UP_EVENTS, seed - 1, 60.0)  # start workers
                        if min(warm["records_per_destination"]) < WARM_UP_EVENTS:
                            raise RuntimeError(f"{kind}: the warm-up was not delivered: {warm}")
                        run = partial(topology.burst, size, seed, args.timeout)
                        result = measure(sampler, size, run)
                    entry = {"variant": kind, "concurrency": concurrency, "round": round_}
                    results.append(entry | {"size": size} | result)
                    say(json.dumps(results[-1]))
    finally:
        rows = with_ratios(results)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"bursts": results, "ratios": rows}, indent=1) + "\n")
        for row in rows:
            say(
                f"{row['variant']} ({row['concurrency']} in flight), {row['size']:,} events:"
                f" {row['events_per_second']:.0f}/s = {row['ratio']:.2f} of the ceiling's"
                f" {row['ceiling_events_per_second']:.0f}/s; emulator"
                f" {row['emulator_ms_per_event']} ms/event (ceiling"
                f" {row['ceiling_emulator_ms_per_event']})"
            )
        say(f"{len(results)} results in {args.out}")
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
