"""The run's parameters: command-line options, defaulting to BENCH_* environment variables."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import asdict, dataclass, replace
from datetime import date
from pathlib import Path

from bench.report import summary_path

TOOL_ROOT = Path(__file__).resolve().parents[1]
# Where a run's files go unless --out (BENCH_OUT) says: relative to the working directory, as
# --out is, and under var/ so that git ignores them (docs/bench keeps the summaries worth it).
RESULTS_DIR = Path("var/bench")
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class Config:
    repo: Path
    stack: str  # "start" or "running"
    env_file: Path
    api_url: str
    var_dir: Path
    out: Path | None  # the raw result; None until with_result_file names it
    label: str
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
    def result_file(self) -> Path:
        if self.out is None:
            raise RuntimeError("no result file yet: call with_result_file first")
        return self.out

    @property
    def plot(self) -> Path:
        return self.result_file.with_suffix(".png")

    @property
    def summary(self) -> Path:
        return summary_path(self.result_file)

    def as_dict(self) -> dict[str, object]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def parse(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the datasync pipeline against its performance targets: API "
        "latency at a fixed open-loop rate, end-to-end throughput and latency, the emulator's "
        "ceiling, AWS calls and cost per event, CPU and memory per event. Writes the raw result "
        "(every sample), its PNG and its summary (the figures, a few KB) and prints the summary.",
        epilog="`python -m bench summarize RESULT.json [--to DIR]` writes the summary of a "
        "result (and copies its PNG) where it is to be kept, e.g. docs/bench.",
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
    p.add_argument(
        "--out",
        type=Path,
        default=_env("BENCH_OUT") or None,
        help="the raw result (the PNG and <name>.summary.json go beside it; default "
        f"{RESULTS_DIR}/<date>-<label>-<commit>.json, never overwriting an earlier run)",
    )
    p.add_argument(
        "--label",
        default=_env("BENCH_LABEL", "run"),
        help="what the run is, in its file names (letters, digits, '.', '_', '-')",
    )
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
        help="a sustained run on the bus at --sustained-rate (600: the 10-minute target)",
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
    if not LABEL.fullmatch(a.label):
        p.error(f"--label {a.label!r}: use letters, digits, '.', '_' and '-' (it names files)")
    sizes = tuple(int(s) for s in str(a.scaling_sizes).split(",") if s.strip())
    repo = a.repo.resolve()
    return Config(
        repo=repo,
        stack=a.stack,
        env_file=_under(repo, a.env_file),
        api_url=a.api_url,
        var_dir=_under(repo, a.var_dir),
        out=a.out.resolve() if a.out else None,
        label=a.label,
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


def with_result_file(config: Config, commit: str | None, dirty: bool, day: date) -> Config:
    """The config with its result file named: --out, else a new file under RESULTS_DIR.

    ``<day>-<label>-<commit>[-dirty].json``, with ``-2``, ``-3`` ... when a run of the same day,
    label and commit is already there: a second run never overwrites the first.
    """
    if config.out is not None:
        return config
    stem = f"{day.isoformat()}-{config.label}-{commit or 'nocommit'}" + ("-dirty" if dirty else "")
    path, n = RESULTS_DIR.resolve() / f"{stem}.json", 1
    while path.exists() or summary_path(path).exists():
        n += 1
        path = path.with_name(f"{stem}-{n}.json")
    return replace(config, out=path)
