"""The report's edge: the tables printed (the main one, scaling, sink_history) and the Report as
output/bench.json."""

from __future__ import annotations

import json
import os

import msgspec

from include.pipeline import settings
from scripts.bench.results import ENGINES, Report, Scaling, SinkHistory


def write(report: Report, text: str) -> None:
    """Write the report to bench.json in the output directory and print the table."""
    out = settings.output_dir() / "bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(msgspec.to_builtins(report), indent=2) + "\n")
    print(text)
    print(f"\nwritten to {out}")


def render(report: Report) -> str:
    """The main table: orders per second and peak RSS of the baselines and each stage (at N and
    N/10), each stage's ratio to its baseline, then the task and whole-DAG times."""
    lines = [f"N = {report.n:,} orders ({os.cpu_count()} cores)", "",
             f"{'step':<22}{'orders/s':>12}{'ratio':>8}{'peak MB':>10}{'peak MB N/10':>14}"]
    for what, base in report.baseline.items():
        lines.append(f"{'baseline ' + what:<22}{base.orders_per_s:>12,}"
                     f"{'':>8}{base.peak_rss_mb:>10}{'':>14}")
    for stage, row in report.stages.items():
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else "-"
        lines.append(f"{stage:<22}{row.orders_per_s:>12,}{ratio:>8}"
                     f"{row.peak_rss_mb:>10}{row.peak_rss_mb_small:>14}")
    lines.append("")
    lines.append(f"process + analyze + sink task time: {report.stage_seconds_process_analyze_sink} s")
    if report.dag_seconds is not None:
        lines.append(
            f"whole DAG run (dags test on the LocalExecutor): {report.dag_seconds} s, of which stages "
            f"{report.dag_stage_seconds} s and Airflow {report.dag_airflow_overhead_seconds} s"
        )
    return "\n".join(lines)


def render_scaling(scaling: Scaling) -> str:
    """process and analyze per number of workers: orders/s, speed-up over one, peak MB a worker."""
    lines = [f"{'workers':<10}{'stage':<10}{'orders/s':>12}{'x one':>8}{'peak MB/worker':>16}"
             f"{'consume baseline':>18}"]
    stages = (("process", scaling.process), ("analyze", scaling.analyze))
    for stage, rows in stages:
        for workers, row in rows.items():
            speed_up = row.orders_per_s / rows[1].orders_per_s
            baseline = scaling.consume_baseline_orders_per_s[workers]
            lines.append(f"{workers:<10}{stage:<10}{row.orders_per_s:>12,}{speed_up:>8.2f}"
                         f"{row.peak_rss_mb_per_worker:>16}{baseline:>18,}")
    for stage, rows in stages:
        lines.append(f"{stage}, 2 workers, peak MB a worker at N/10: {rows[2].peak_rss_mb_per_worker_small}")
    if scaling.dag_run_seconds is not None:
        lines.append("whole DAG run (dags test on the LocalExecutor): "
                     + ", ".join(f"{w} worker(s) {s} s" for w, s in scaling.dag_run_seconds.items()))
    return "\n".join(lines)


def render_history(history: SinkHistory, sizes: tuple[int, ...]) -> str:
    """The sink_history table: the sink's seconds and peak RSS at each store size, the largest
    against the empty one, then the page's and reconcile's seconds."""
    big, empty = sizes[-1], sizes[0]
    lines = ["sink applying 1,000 window records onto a store of N rows (target at the largest: "
             "<= 1.5x the seconds, <= 1.2x the peak RSS of the empty store)",
             f"{'engine':<12}" + "".join(f"{f'{size:,} rows':>22}" for size in sizes)
             + f"{'x seconds':>11}{'x RSS':>8}"]
    for engine in ENGINES:
        rows = history.engine(engine)
        cells = "".join(f"{rows[size].seconds:>10.3f} s {rows[size].peak_rss_mb:>6} MB" for size in sizes)
        lines.append(f"{engine:<12}{cells}{rows[big].seconds / rows[empty].seconds:>11.2f}"
                     f"{rows[big].peak_rss_mb / rows[empty].peak_rss_mb:>8.2f}")
    for engine in ENGINES:
        rows = history.engine(engine)
        page = ", ".join(f"{size:,} rows {rows[size].page_seconds:.3f} s" for size in sizes)
        lines.append(f"Order metrics page, the default 3 hours of metrics, {engine}: {page}")
    lines.append(f"reconcile at {sizes[-1]:,} rows: "
                 + ", ".join(f"{e} {s:.3f} s" for e, s in history.reconcile_seconds.items()))
    return "\n".join(lines)
