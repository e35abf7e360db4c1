"""The PNG: throughput, latency and queue depth over the run's time, phases marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = [s for s in result.get("timeseries", []) if "applied" in s]
    if not samples:
        raise ValueError("no samples to plot")
    t0 = samples[0]["t"]
    t = [s["t"] - t0 for s in samples]
    destinations = sorted(samples[0]["applied"])
    fig, (ax_rate, ax_latency, ax_depth) = plt.subplots(3, 1, figsize=(12, 10), sharex=True)

    for destination in destinations:
        rates = [0.0] + [
            (b["applied"].get(destination, 0) - a["applied"].get(destination, 0))
            / max(b.get("interval", 1), 1e-6)
            for a, b in zip(samples, samples[1:], strict=False)
        ]
        ax_rate.plot(t, rates, label=f"applied/s {destination}", linewidth=1)
    series = (result.get("api") or {}).get("per_second", [])
    if series:
        ax_rate.plot(
            [p["t"] - t0 for p in series],
            [p["accepted"] for p in series],
            label="API 202/s",
            linewidth=1.5,
        )
        lat_t = [p["t"] - t0 for p in series]
        for key, label in (
            ("api_p50_ms", "API p50"),
            ("api_p99_ms", "API p99"),
            ("e2e_p95_ms", "202->applied p95"),
        ):
            ax_latency.plot(lat_t, [p[key] for p in series], label=label, linewidth=1)
        ax_latency.set_yscale("log")
    for n, ceiling in enumerate(_ceilings(result)):
        start, end = ceiling["window"]
        ax_rate.hlines(
            ceiling["events_per_second"],
            start - t0,
            end - t0,
            colors="black",
            linestyles="dashed",
            label="emulator ceiling (own queues)" if n == 0 else None,
        )
    sustained = result.get("sustained") or {}
    if sustained.get("windows"):
        begin = sustained["window"][0] - t0
        mids = [begin + (w["from_s"] + w["to_s"]) / 2 for w in sustained["windows"]]
        ax_latency.plot(
            mids,
            [(w["latency_ms"] or {}).get("p95") for w in sustained["windows"]],
            marker="o",
            label="sustained due->applied p95",
            linewidth=1,
        )
        ax_latency.set_yscale("log")
    ax_rate.set_ylabel("events or requests / s")
    ax_latency.set_ylabel("latency (ms, log)")

    for destination in destinations:
        for kind in ("buffer", "queue"):
            ax_depth.plot(
                t,
                [s["depth"].get(destination, {}).get(kind, 0) for s in samples],
                label=f"{kind} {destination}",
                linewidth=1,
            )
    if any("intake" in s["depth"] for s in samples):
        ax_depth.plot(
            t,
            [s["depth"].get("intake", {}).get("buffer", 0) for s in samples],
            label="intake",
            linewidth=1,
        )
    ax_depth.set_ylabel("messages (visible + in flight)")
    ax_depth.set_xlabel("seconds since the first sample")

    for ax in (ax_rate, ax_latency, ax_depth):
        _shade_phases(ax, samples, t0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    params = result.get("parameters", {})
    fig.suptitle(
        f"datasync bench: {params.get('rate')} req/s for {params.get('seconds')} s, "
        f"{result.get('cores')} cores, checkout {(result.get('checkout') or {}).get('commit')}",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _ceilings(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [result["ceiling"]] if result.get("ceiling") else []
    return rows + [row["ceiling"] for row in result.get("scaling") or []]


def _shade_phases(ax: Any, samples: list[dict[str, Any]], t0: float) -> None:
    spans: list[tuple[str, float, float]] = []
    for s in samples:
        if spans and spans[-1][0] == s["phase"]:
            spans[-1] = (s["phase"], spans[-1][1], s["t"] - t0)
        else:
            spans.append((s["phase"], s["t"] - t0, s["t"] - t0))
    for n, (phase, start, end) in enumerate(spans):
        if n % 2:
            ax.axvspan(start, end, color="grey", alpha=0.08)
        if ax.get_subplotspec().is_first_row():
            ax.text(
                start,
                1.0,
                phase,
                transform=ax.get_xaxis_transform(),
                fontsize=6,
                va="bottom",
                rotation=30,
            )
