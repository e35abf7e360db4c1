"""The run's parameters: command-line options, defaulting to BENCH_* environment variables."""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass
from pathlib import Path

TOOL_ROOT = Path(__file__).resolve().parents[1]


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class Config:
    repo: Path
    stack: str  # "start" or "running"
    env_file: Path
    api_url: str
    var_dir: Path
    out: Path
    rate: float
    seconds: float
    warmup_seconds: float
    burst: int
    scaling: bool
    scaling_sizes: tuple[int, ...]
    sustained_seconds: float
    sustained_rate: float
    accounting: bool
    accounting_rate: float
    accounting_bus_rate: float
    accounting_seconds: float
    accounting_idle_seconds: float
    ceiling_drain_threads: int
    drain_timeout: float
    seed: int
    progress: bool

    @property
    def plot(self) -> Path:
        return self.out.with_suffix(".png")

    def as_dict(self) -> dict[str, object]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def parse(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the datasync pipeline (issue 8): API latency at a fixed open-loop "
        "rate, end-to-end throughput and latency, the emulator's ceiling, AWS calls and cost per "
        "event, CPU and memory per event. Writes JSON + PNG and prints a summary.",
    )
    p.add_argument(
        "--repo",
        type=Path,
        default=Path(_env("BENCH_REPO", ".")),
        help="checkout to measure (its .venv/bin/datasync starts the stack)",
    )
    p.add_argument(
        "--stack",
        choices=("start", "running"),
        default=_env("BENCH_STACK", "start"),
        help="start a stack of our own (default) or use a running one",
    )
    p.add_argument(
        "--env-file",
        type=Path,
        default=Path(_env("BENCH_ENV_FILE", "var/local/datasync.env")),
        help="with --stack running: the settings `datasync up` wrote",
    )
    p.add_argument(
        "--api-url",
        default=_env("BENCH_API_URL", f"http://127.0.0.1:{_env('API_PORT', '8080')}"),
        help="with --stack running: where the API listens",
    )
    p.add_argument(
        "--var-dir",
        type=Path,
        default=Path(_env("BENCH_VAR_DIR", "var/bench")),
        help="state of the stacks this tool starts (stores, logs, Terraform)",
    )
    p.add_argument("--out", type=Path, default=Path(_env("BENCH_OUT", "bench-result.json")))
    p.add_argument(
        "--rate",
        type=float,
        default=float(_env("BENCH_RATE", "200")),
        help="offered POST /v1/users per second (open loop)",
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=float(_env("BENCH_SECONDS", "60")),
        help="length of the API pass",
    )
    p.add_argument("--warmup-seconds", type=float, default=float(_env("BENCH_WARMUP_SECONDS", "5")))
    p.add_argument(
        "--burst",
        type=int,
        default=int(_env("BENCH_BURST", "6000")),
        help="events of the pipeline-vs-ceiling burst (0: skip)",
    )
    p.add_argument(
        "--scaling",
        action="store_true",
        default=_env("BENCH_SCALING", "0") == "1",
        help="bursts of every --scaling-sizes beside the ceiling at the same sizes",
    )
    p.add_argument("--scaling-sizes", default=_env("BENCH_SCALING_SIZES", "2000,6000,20000"))
    p.add_argument(
        "--sustained-seconds",
        type=float,
        default=float(_env("BENCH_SUSTAINED_SECONDS", "0")),
        help="a sustained run on the bus at --sustained-rate (600 for the issue's 10 min)",
    )
    p.add_argument(
        "--sustained-rate", type=float, default=float(_env("BENCH_SUSTAINED_RATE", "500"))
    )
    p.add_argument(
        "--no-accounting",
        dest="accounting",
        action="store_false",
        default=_env("BENCH_ACCOUNTING", "1") == "1",
        help="skip the accounting pass (AWS calls and cost per event)",
    )
    p.add_argument(
        "--accounting-rate",
        type=float,
        default=float(_env("BENCH_ACCOUNTING_RATE", "0")),
        help="offered rate of the accounting pass (default: --rate)",
    )
    p.add_argument(
        "--accounting-bus-rate",
        type=float,
        default=float(_env("BENCH_ACCOUNTING_BUS_RATE", "-1")),
        help="events/s of a second accounting window, put straight on the bus "
        "(default: --sustained-rate; 0: skip)",
    )
    p.add_argument(
        "--accounting-seconds", type=float, default=float(_env("BENCH_ACCOUNTING_SECONDS", "15"))
    )
    p.add_argument(
        "--accounting-idle-seconds",
        type=float,
        default=float(_env("BENCH_ACCOUNTING_IDLE_SECONDS", "20")),
    )
    p.add_argument(
        "--ceiling-drain-threads",
        type=int,
        default=int(_env("BENCH_CEILING_DRAIN_THREADS", "4")),
        help="receive/delete threads per ceiling queue (the consumers' concurrency)",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=float(_env("BENCH_DRAIN_TIMEOUT", "300")),
        help="how long to wait for the pipeline to apply what was sent",
    )
    p.add_argument("--seed", type=int, default=int(_env("BENCH_SEED", "8")))
    p.add_argument("--no-progress", dest="progress", action="store_false")
    a = p.parse_args(argv)
    if a.rate <= 0 or a.seconds <= 0:
        p.error("--rate and --seconds must be positive")
    sizes = tuple(int(s) for s in str(a.scaling_sizes).split(",") if s.strip())
    repo = a.repo.resolve()
    return Config(
        repo=repo,
        stack=a.stack,
        env_file=_under(repo, a.env_file),
        api_url=a.api_url,
        var_dir=_under(repo, a.var_dir),
        out=a.out.resolve(),
        rate=a.rate,
        seconds=a.seconds,
        warmup_seconds=a.warmup_seconds,
        burst=a.burst,
        scaling=a.scaling,
        scaling_sizes=sizes,
        sustained_seconds=a.sustained_seconds,
        sustained_rate=a.sustained_rate,
        accounting=a.accounting,
        accounting_rate=a.accounting_rate or a.rate,
        accounting_bus_rate=a.sustained_rate
        if a.accounting_bus_rate < 0
        else a.accounting_bus_rate,
        accounting_seconds=a.accounting_seconds,
        accounting_idle_seconds=a.accounting_idle_seconds,
        ceiling_drain_threads=a.ceiling_drain_threads,
        drain_timeout=a.drain_timeout,
        seed=a.seed,
        progress=a.progress,
    )


def _under(repo: Path, path: Path) -> Path:
    return path if path.is_absolute() else (repo / path).resolve()
