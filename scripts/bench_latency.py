"""End-to-end latency of continuous mode (`make bench-latency`).

For each rate, a throwaway broker and store, and the stream supervisor (include.pipeline.stream)
for a warm-up and then the measured seconds, both from the stages' start: the latency percentiles
of the orders produced after the warm-up, and the lag left at the end (whether the stages kept up). The
highest rate again with each of ``--workers`` (processes per scalable stage; the others with one).
Writes output/latency.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from include.pipeline import settings  # noqa: E402
from scripts.kafka.local import throwaway_broker  # noqa: E402

RATES = (50, 5_000, 50_000)
WORKERS = (1, 2)  # the highest rate with each; the lower ones with one
TARGET_P99_MS = {50: 1000, 5_000: 1000}  # the targets; 50,000 a second is reported as it is


def measure(rate: int, workers: int, seconds: float, warmup: float, work: Path) -> dict:
    """The stream supervisor at ``rate`` orders a second with ``workers`` on a throwaway broker,
    for ``warmup`` and then ``seconds`` seconds; returns the summary it writes (latency, lag at
    the end, stages)."""
    env = {**os.environ, "PIPELINE_OUTPUT_DIR": str(work / "output")}
    summary = work / "summary.json"
    with throwaway_broker(work / "kafka", env) as env:
        print(f"\n{rate:,} orders a second, {workers} worker(s): {warmup:g}s warm-up, then {seconds:g}s"
              " measured", flush=True)
        subprocess.run(
            [sys.executable, "-m", "include.pipeline.stream", "--rate", str(rate), "--workers", str(workers),
             "--seconds", str(warmup + seconds), "--warmup-seconds", str(warmup), "--status-seconds", "10",
             "--summary", str(summary)],
            env=env, cwd=ROOT, check=True,
        )
    return json.loads(summary.read_text())


def main() -> int:
    """Measure each rate, write output/latency.json and print the table; returns 1 if a p99 misses
    its target."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=int, nargs="+", default=list(RATES))
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=list(WORKERS),
                        help="the highest rate with each of these numbers of workers (default 1 2)")
    args = parser.parse_args()
    if min(args.workers) < 1:
        parser.error(f"--workers must be 1 or more, got {min(args.workers)}")
    # {"rates": {rate: row}} with one worker, as before workers; {"workers": {n: {rate: row}}} for all.
    report, summaries = {"rates": {}, "workers": {}}, {}
    top = max(args.rates)
    runs = [(rate, 1) for rate in args.rates if rate != top] + [(top, w) for w in sorted(set(args.workers))]
    for rate, workers in runs:
        with tempfile.TemporaryDirectory(prefix=f"bench-latency-{rate}-") as work:
            summary = summaries[rate, workers] = measure(rate, workers, args.seconds, args.warmup, Path(work))
        row = {**summary["latency"], "lag_at_end": summary["lag_at_end"]}
        report["workers"].setdefault(str(workers), {})[str(rate)] = row
        if workers == 1:
            report["rates"][str(rate)] = row
    path = settings.output_dir() / "latency.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print("\n".join(render(report, summaries, args.seconds + args.warmup)))
    print(f"\nwritten to {path}")
    missed = [
        rate for rate, target in TARGET_P99_MS.items()
        if str(rate) in report["rates"] and not (report["rates"][str(rate)]["p99_ms"] or target + 1) <= target
    ]
    if missed:
        print(f"p99 above its 1 s target at {', '.join(f'{rate:,}' for rate in missed)} orders a second")
    return 1 if missed else 0


def render(report: dict, summaries: dict[tuple[int, int], dict], seconds: float) -> list[str]:
    """The report as a Markdown table, a row per rate and workers: orders generated a second, the
    latency percentiles, the orders measured and the lag at the end."""
    lines = [
        "| orders/s | workers | generated/s | p50 ms | p95 ms | p99 ms | max ms | orders measured "
        "| lag at end |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (rate, workers), summary in summaries.items():
        row = report["workers"][str(workers)][str(rate)]
        generated = summary["stages"]["generate"]["written"] / seconds
        lines.append(
            f"| {rate:,} | {workers} | {generated:,.0f} | {row['p50_ms']} | {row['p95_ms']} | "
            f"{row['p99_ms']} | {row['max_ms']} | {row['orders']:,} | {row['lag_at_end']:,} |"
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
