"""The run's parameters: command-line options, defaulting to BENCH_* environment variables.

Every variable the benchmark reads is declared once in VARIABLES, with its default and meaning
(docs/configuration.md is generated from them); the options' help says the same.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import date
from pathlib import Path

from bench.report import summary_path
from datasync.local_layout import DEFAULT_API_PORT, LOCAL_API_KEY
from datasync.variables import Variable

TOOL_ROOT = Path(__file__).resolve().parents[1]
# Where a run's files go unless --out (BENCH_OUT) says: relative to the working directory, as
# --out is, and under var/ so that git ignores them (docs/bench keeps the summaries worth it).
RESULTS_DIR = Path("var/bench")
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
BENCH, API_ALONE = "`make bench`", "`make bench-api`"

VARIABLES = {
    v.name: v
    for v in (
        Variable(
            "BENCH_REPO",
            "Checkout to measure (its .venv/bin/datasync starts the stack)",
            default=".",
            allowed="path",
            read_by=(BENCH, API_ALONE),
        ),
        Variable(
            "BENCH_STACK",
            "Start a stack of our own, or use a running one",
            default="start",
            allowed="start, running",
            read_by=(BENCH,),
        ),
        Variable(
            "BENCH_ENV_FILE",
            "With `BENCH_STACK=running`: the settings `datasync up` wrote (relative to the "
            "checkout)",
            default="var/local/datasync.env",
            allowed="path",
            read_by=(BENCH,),
        ),
        Variable(
            "BENCH_API_URL",
            "With `BENCH_STACK=running`: where the API listens (unset: 127.0.0.1 on `API_PORT`)",
            allowed="URL",
            read_by=(BENCH,),
        ),
        Variable(
            "API_PORT",
            "The running stack's API port, when `BENCH_API_URL` is unset",
            default=str(DEFAULT_API_PORT),
            allowed="integer 1–65535",
            read_by=(BENCH,),
        ),
        Variable(
            "DATASYNC_API_KEYS",
            "The running stack's API keys (the first is used; unset: the local development key)",
            default="",
            allowed="text (secret)",
            read_by=(BENCH,),
        ),
        Variable(
            "BENCH_VAR_DIR",
            "State of the stacks this tool starts: stores, logs, Terraform (relative to the "
            "checkout)",
            default="var/bench",
            allowed="path",
            read_by=(BENCH,),
        ),
        Variable(
            "BENCH_OUT",
            "The raw result (the PNG and `<name>.summary.json` go beside it; unset: "
            f"`{RESULTS_DIR}/<date>-<label>-<commit>.json`, never overwriting an earlier run)",
            allowed="path",
            read_by=(BENCH,),
        ),
        Variable(
            "BENCH_LABEL",
            "What the run is, in its file names",
            default="run",
            allowed="letters, digits, `.`, `_`, `-`",
            read_by=(BENCH,),
        ),
        Variable(
            "BENCH_RATE",
            "Offered POST /v1/users per second (open loop)",
            default="200",
            allowed="number > 0",
            read_by=(BENCH, API_ALONE),
        ),
        Variable(
            "BENCH_SECONDS",
            "Length of the API pass",
            default="60",
            allowed="number > 0",
            read_by=(BENCH,),
        ),
        Variable(
            "BENCH_WARMUP_SECONDS",
            "Warm-up before the API pass is measured",
            default="5",
            allowed="number ≥ 0",
            read_by=(BENCH,),
        ),
        Variable(
            "BENCH_BURST",
            "Events of the pipeline-vs-ceiling burst (0: skip)",
            default="6000",
            allowed="integer ≥ 0",
            read_by=(BENCH,),
        ),
        Variable(
            "BENCH_SCALING",
            "`1`: bursts of every `BENCH_SCALING_SIZES` beside the ceiling at the same sizes",
            default="0",
            allowed="0, 1",
            read_by=(BENCH,),
        ),
        Variable(
            "BENCH_SCALING_SIZES",
            "Burst sizes of the scaling pass",
            default="2000,6000,20000",
            allowed="comma-separated integers",
            read_by=(BENCH,),
        ),
        Variable(
            "BENCH_SUSTAINED_SECONDS",
            "A sustained run on the bus at `BENCH_SUSTAINED_RATE` (600: the 10-minute target; 0: "
            "skip)",
            default="0",
            allowed="number ≥ 0",
            read_by=(BENCH,),
        ),
        Variable(
            "BENCH_SUSTAINED_RATE",
            "Events per second of the sustained run",
            default="500",
            allowed="number > 0",
            read_by=(BENCH,),
        ),
        Variable(
            "BENCH_ACCOUNTING",
            "`0` skips the accounting pass (AWS calls and cost per event)",
            default="1",
            allowed="0, 1",
            read_by=(BENCH,),
        ),
        Variable(
            "BENCH_ACCOUNTING_RATE",
            "Offered rate of the accounting pass (0: `BENCH_RATE`)",
            default="0",
            allowed="number ≥ 0",
            read_by=(BENCH,),
        ),
        Variable(
            "BENCH_ACCOUNTING_BUS_RATE",
            "Events per second of a second accounting window, put straight on the bus (-1: "
            "`BENCH_SUSTAINED_RATE`; 0: skip)",
            default="-1",
            allowed="number ≥ -1",
            read_by=(BENCH,),
        ),
        Variable(
            "BENCH_ACCOUNTING_SECONDS",
            "Length of each accounting window",
            default="15",
            allowed="number > 0",
            read_by=(BENCH,),
        ),
        Variable(
            "BENCH_ACCOUNTING_IDLE_SECONDS",
            "Length of the idle accounting window (what a stack costs doing nothing)",
            default="20",
            allowed="number ≥ 0",
            read_by=(BENCH,),
        ),
        Variable(
            "BENCH_CEILING_DRAIN_THREADS",
            "Receive/delete threads per ceiling queue (the consumers' concurrency)",
            default="4",
            allowed="integer ≥ 1",
            read_by=(BENCH,),
        ),
        Variable(
            "BENCH_DRAIN_TIMEOUT",
            "How long to wait for the pipeline to apply what was sent",
            default="300",
            allowed="number > 0",
            read_by=(BENCH,),
        ),
        Variable(
            "BENCH_SEED",
            "Seed of the generated users and schedules",
            default="8",
            allowed="integer",
            read_by=(BENCH,),
        ),
    )
}


def env_default(name: str) -> str:
    """An option's default: its variable in the environment, else the declared default."""
    return str(VARIABLES[name].read(os.environ))


def described(name: str) -> str:
    """An option's help: what its variable means, and its name."""
    return f"{VARIABLES[name].description} [env {name}]"


def api_key(env: Mapping[str, str] | None = None) -> str:
    """The key a stack takes: the first of DATASYNC_API_KEYS in ``env`` (default: this process's
    environment), else the local development key."""
    raw = VARIABLES["DATASYNC_API_KEYS"].read(os.environ if env is None else env) or ""
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    return keys[0] if keys else LOCAL_API_KEY


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
        "--repo", type=Path, default=Path(env_default("BENCH_REPO")), help=described("BENCH_REPO")
    )
    p.add_argument(
        "--stack",
        choices=("start", "running"),
        default=env_default("BENCH_STACK"),
        help=described("BENCH_STACK"),
    )
    p.add_argument(
        "--env-file",
        type=Path,
        default=Path(env_default("BENCH_ENV_FILE")),
        help=described("BENCH_ENV_FILE"),
    )
    p.add_argument(
        "--api-url",
        default=VARIABLES["BENCH_API_URL"].read(os.environ)
        or f"http://127.0.0.1:{env_default('API_PORT')}",
        help=described("BENCH_API_URL"),
    )
    p.add_argument(
        "--var-dir",
        type=Path,
        default=Path(env_default("BENCH_VAR_DIR")),
        help=described("BENCH_VAR_DIR"),
    )
    out = VARIABLES["BENCH_OUT"].read(os.environ)
    p.add_argument(
        "--out", type=Path, default=Path(out) if out else None, help=described("BENCH_OUT")
    )
    p.add_argument("--label", default=env_default("BENCH_LABEL"), help=described("BENCH_LABEL"))
    for option, name, kind in [
        ("--rate", "BENCH_RATE", float),
        ("--seconds", "BENCH_SECONDS", float),
        ("--warmup-seconds", "BENCH_WARMUP_SECONDS", float),
        ("--burst", "BENCH_BURST", int),
        ("--sustained-seconds", "BENCH_SUSTAINED_SECONDS", float),
        ("--sustained-rate", "BENCH_SUSTAINED_RATE", float),
        ("--accounting-rate", "BENCH_ACCOUNTING_RATE", float),
        ("--accounting-bus-rate", "BENCH_ACCOUNTING_BUS_RATE", float),
        ("--accounting-seconds", "BENCH_ACCOUNTING_SECONDS", float),
        ("--accounting-idle-seconds", "BENCH_ACCOUNTING_IDLE_SECONDS", float),
        ("--ceiling-drain-threads", "BENCH_CEILING_DRAIN_THREADS", int),
        ("--drain-timeout", "BENCH_DRAIN_TIMEOUT", float),
        ("--seed", "BENCH_SEED", int),
    ]:
        p.add_argument(option, type=kind, default=kind(env_default(name)), help=described(name))
    p.add_argument(
        "--scaling",
        action="store_true",
        default=env_default("BENCH_SCALING") == "1",
        help=described("BENCH_SCALING"),
    )
    p.add_argument(
        "--scaling-sizes",
        default=env_default("BENCH_SCALING_SIZES"),
        help=described("BENCH_SCALING_SIZES"),
    )
    p.add_argument(
        "--no-accounting",
        dest="accounting",
        action="store_false",
        default=env_default("BENCH_ACCOUNTING") == "1",
        help=described("BENCH_ACCOUNTING"),
    )
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
