"""The report's edge: the tables printed (the main one, scaling, sink_history) and the Report as
output/bench.json. A figure is printed as its median, then its spread (min-max)."""

from __future__ import annotations

import json
import os

import msgspec

from include.pipeline import settings
from scripts.bench.model import versus_measured
from scripts.bench.results import (
    ENGINES,
    MIXES,
    BaselineRow,
    Figure,
    Report,
    Scaling,
    ScalingRow,
    SinkHistory,
    StageRow,
)

BEST_CASE = "  best case"  # the best case's row, under the DAG mix's of the same step


def write(report: Report, text: str) -> None:
    """Write the report to bench.json in the output directory and print the table."""
    out = settings.output_dir() / "bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(msgspec.to_builtins(report), indent=2) + "\n")
    print(text)
    print(f"\nwritten to {out}")


def spread(figure: Figure, form: str = ",") -> str:
    """``figure``'s spread, min-max, each in ``form``."""
    return f"{figure.min:{form}}-{figure.max:{form}}"


def rate(figure: Figure) -> str:
    """A rate's two columns: its median, and its spread."""
    return f"{figure.median:>11,.0f}{spread(figure, ',.0f'):>18}"


def cpu(row: BaselineRow | StageRow | ScalingRow) -> str:
    """A row's two CPU columns: the medians of its own and the broker's CPU a record, in us."""
    return f"{row.cpu_us_per_record.median:>9.2f}{row.broker_cpu_us_per_record.median:>10.2f}"


def render(report: Report) -> str:
    """The main table: records a second and peak RSS of the baselines and each stage (at N and
    N/10), each stage's ratio to its baseline, the records it read and wrote, its CPU and the
    broker's a record, the DAG's input mix and the best case's row under it; then the task and
    whole-DAG times."""
    default, best = report.series["default"], report.series["best_case"]
    lines = [
        f"N = {report.n:,} orders ({os.cpu_count()} cores); each figure the median of {report.repeats} "
        "run(s), then their min-max",
        f"each step on the DAG's input mix (invalid_ratio {MIXES['default']:g}), and its best case "
        f"(invalid_ratio {MIXES['best_case']:g}) under it; CPU a record read: the step's own (its "
        "process, all its threads) and the broker's",
        "",
        f"{'step':<22}{'records/s':>11}{'min-max':>18}{'ratio':>7}{'min-max':>11}{'peak MB':>9}"
        f"{'N/10':>7}{'read':>11}{'written':>11}{'CPU us':>9}{'broker us':>10}",
    ]
    for what in default.baseline:
        for name, series in ((f"baseline {what}", default), (BEST_CASE, best)):
            row = series.baseline[what]
            lines.append(
                f"{name:<22}{rate(row.records_per_s)}{'':>18}{row.peak_rss_mb.median:>9}{'':>29}{cpu(row)}"
            )
    for stage in default.stages:
        for name, series in ((stage, default), (BEST_CASE, best)):
            row = series.stages[stage]
            ratio = f"{'-':>7}{'':>11}"
            if row.ratio is not None:
                ratio = f"{row.ratio.median:>7.2f}{spread(row.ratio, '.2f'):>11}"
            lines.append(
                f"{name:<22}{rate(row.records_per_s)}{ratio}"
                f"{row.peak_rss_mb.median:>9}{row.peak_rss_mb_small.median:>7}"
                f"{row.records_read.median:>11,.0f}{row.records_written.median:>11,.0f}{cpu(row)}"
            )
    lines.append("")
    for name, series in (("", default), (" (best case)", best)):
        total = series.stage_seconds_process_analyze_sink
        lines.append(f"process + analyze + sink task time{name}: {total.median} s ({spread(total, '')})")
    for name, series in (("", default), (", best case", best)):
        if dag := series.dag:
            lines.append(
                f"whole DAG run (dags test on the LocalExecutor, 1 worker{name}): {dag.dag_seconds.median} s "
                f"({spread(dag.dag_seconds, '')}), of which stages {dag.dag_stage_seconds.median} s and "
                f"Airflow {dag.dag_airflow_overhead_seconds.median} s"
            )
    return "\n".join(lines)


def render_scaling(scaling: Scaling) -> str:
    """process and analyze per number of workers: records/s, speed-up over one, peak MB a worker,
    the workers' CPU and the broker's a record; then the model against these rates."""
    lines = [f"{'workers':<10}{'stage':<10}{'records/s':>11}{'min-max':>18}{'x one':>7}"
             f"{'peak MB/worker':>16}{'consume baseline':>18}{'CPU us':>9}{'broker us':>10}"]
    stages = (("process", scaling.process), ("analyze", scaling.analyze))
    for stage, rows in stages:
        for workers, row in rows.items():
            speed_up = row.records_per_s.median / rows[1].records_per_s.median
            baseline = scaling.consume_baseline_records_per_s[workers].median
            lines.append(f"{workers:<10}{stage:<10}{rate(row.records_per_s)}{speed_up:>7.2f}"
                         f"{row.peak_rss_mb_per_worker.median:>16}{baseline:>18,.0f}{cpu(row)}")
    for stage, rows in stages:
        small = rows[2].peak_rss_mb_per_worker_small
        lines.append(f"{stage}, 2 workers, peak MB a worker at N/10: {small.median} ({spread(small, '')})")
    if scaling.dag_run_seconds is not None:
        lines.append("whole DAG run (dags test on the LocalExecutor): " + ", ".join(
            f"{w} worker(s) {s.median} s ({spread(s, '')})" for w, s in scaling.dag_run_seconds.items()
        ))
    lines += ["", versus_measured(msgspec.to_builtins(scaling, str_keys=True))]
    return "\n".join(lines)


def render_history(history: SinkHistory, sizes: tuple[int, ...]) -> str:
    """The sink_history table: the sink's seconds and peak RSS at each store size, the largest
    against the empty one, the seconds' spreads, then the page's and reconcile's seconds."""
    big, empty = sizes[-1], sizes[0]
    lines = ["sink applying 1,000 window records onto a store of N rows (target at the largest: "
             "<= 1.5x the seconds, <= 1.2x the peak RSS of the empty store)",
             f"{'engine':<12}" + "".join(f"{f'{size:,} rows':>22}" for size in sizes)
             + f"{'x seconds':>11}{'x RSS':>8}"]
    for engine in ENGINES:
        rows = history.engine(engine)
        cells = "".join(
            f"{rows[size].seconds.median:>10.3f} s {rows[size].peak_rss_mb.median:>6} MB" for size in sizes
        )
        lines.append(f"{engine:<12}{cells}{rows[big].seconds.median / rows[empty].seconds.median:>11.2f}"
                     f"{rows[big].peak_rss_mb.median / rows[empty].peak_rss_mb.median:>8.2f}")
        spreads = "".join(f"{spread(rows[size].seconds, '.3f'):>19} s " for size in sizes)
        lines.append(f"{'  min-max':<12}{spreads}")
    for engine in ENGINES:
        rows = history.engine(engine)
        page = ", ".join(f"{size:,} rows {rows[size].page_seconds.median:.3f} s" for size in sizes)
        lines.append(f"Order metrics page, the default 3 hours of metrics, {engine}: {page}")
    lines.append(f"reconcile at {sizes[-1]:,} rows: "
                 + ", ".join(f"{e} {s:.3f} s" for e, s in history.reconcile_seconds.items()))
    return "\n".join(lines)

