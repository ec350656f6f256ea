"""What continuous mode prints: a status line every few seconds, and a summary at the end."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from include.pipeline import topology
from include.pipeline.domain import telemetry
from include.pipeline.run.results import run_results

STAGES = topology.names(topology.PIPELINE)  # a process each


@dataclass
class Interval:
    """What the stages reported since the last status line (or since the start)."""

    started: float = field(default_factory=time.monotonic)
    read: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))
    written: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))
    latencies: telemetry.Latencies = field(default_factory=telemetry.Latencies)

    def add(self, tick: telemetry.Tick) -> None:
        """Count a stage's committed batch in."""
        self.read[tick.stage] += tick.read
        self.written[tick.stage] += tick.written
        self.latencies.merge(tick.latencies)

    def status(self, names: list[str], lags: dict[str, int]) -> str:
        """The status line: each stage's rates in and out and its lag, and the end-to-end latency."""
        seconds = max(time.monotonic() - self.started, 1e-3)
        read, written = self.read, self.written
        parts = []
        for stage in names:
            if stage == "generate":
                parts.append(f"generate {written[stage] / seconds:,.0f}/s")
                continue
            out = "rows" if stage == "sink" else "out"
            parts.append(
                f"{stage} {read[stage] / seconds:,.0f}/s in, {written[stage] / seconds:,.0f}/s {out}, "
                f"lag {lags[stage] if stage in lags else '?'}"
            )
        latency = self.latencies
        if latency.orders:
            parts.append(f"latency p50 {latency.percentile(50)} ms, p99 {latency.percentile(99)} ms "
                         f"({latency.orders:,} orders)")
        else:
            parts.append("latency -")
        return " | ".join(parts)


def render(summary: dict) -> list[str]:
    """The summary printed when continuous mode stops."""
    lines = [f"stopped after {summary['seconds']:g}s"]
    for stage, counts in summary["stages"].items():
        what = {"generate": f"{counts['written']:,} orders generated",
                "sink": f"{counts['read']:,} metrics records read, {counts['written']:,} rows changed"}.get(
            stage, f"{counts['read']:,} read, {counts['written']:,} written")
        restarts = f" ({counts['restarts']} restarts)" if counts["restarts"] else ""
        lines.append(f"  {stage:<9}{what}{restarts}")
    if sink := run_results(summary["results"]).sink:
        lines.append(f"  store    {sink.order_count:,} orders, revenue {sink.total_revenue} in "
                     f"{sink.metrics:,} rows ({sink.store})")
    latency = summary["latency"]
    if latency["orders"]:
        lines.append(
            f"  end-to-end latency over {latency['orders']:,} orders: p50 {latency['p50_ms']} ms, "
            f"p95 {latency['p95_ms']} ms, p99 {latency['p99_ms']} ms, max {latency['max_ms']} ms"
        )
    if summary["lag"]:
        lines.append(
            "  lag at the end: " + ", ".join(f"{stage} {n:,}" for stage, n in summary["lag"].items())
        )
    return lines


def say(line: str) -> None:
    """Print a line of the supervisor's, timed."""
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)
