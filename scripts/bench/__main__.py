"""The command line of ``python -m scripts.bench``: the whole benchmark, a part of it, the stages
under cProfile, or (--child) one measured step in this process."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from include.pipeline import settings
from scripts.bench import __doc__ as overview
from scripts.bench.child import child
from scripts.bench.dag_runs import DAG_RUN_WORKERS, DAG_RUNS, SCALING_DAG_RUNS, dag_runs
from scripts.bench.render import render, render_history, render_scaling, write
from scripts.bench.results import DagRun, Report
from scripts.bench.scaling import scaling
from scripts.bench.series import profile, series
from scripts.bench.sink_history import HISTORY_SIZES, sink_history

REPEATS = 3  # runs of each measured step; a figure is their median, with their spread


def arguments() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m scripts.bench", description=overview.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="orders (default 1,000,000)")
    parser.add_argument(
        "--repeats", type=int, default=REPEATS,
        help=f"runs of each step, each figure their median (default {REPEATS}); sink_history runs once, "
             "each of its figures the median of as many",
    )
    parser.add_argument("--child")
    parser.add_argument("--store", help="(child) the metrics store's URL")
    parser.add_argument("--share", help="(child) as worker i of n: i/n")
    parser.add_argument("--invalid-ratio", type=float, help="(child) generate: the share of invalid orders")
    parser.add_argument("--scaling-only", action="store_true", help="only the scaling part")
    parser.add_argument("--skip-dag", action="store_true", help="leave out the whole-DAG run")
    parser.add_argument("--sink-history-only", action="store_true", help="only the sink_history part")
    parser.add_argument(
        "--history-sizes", default=",".join(map(str, HISTORY_SIZES)),
        help="store sizes (rows) for sink_history, comma-separated; the last also times reconcile",
    )
    parser.add_argument(
        "--profile", action="store_true",
        help="instead: run each stage once under cProfile and write its top functions to output/profiles/",
    )
    parser.add_argument("--profile-to")
    args = parser.parse_args()
    if not args.child and args.n < 10:
        parser.error("--n must be at least 10")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main() -> int:
    """Run the benchmark (all of it, the sink_history part alone, or the stages under cProfile)
    and write its report; with --child, one measured step of it."""
    args = arguments()
    if args.child:
        child(args.child, args.n, args.store, args.profile_to, args.share, args.invalid_ratio)
        return 0
    n, repeats = args.n, args.repeats
    sizes = tuple(int(size) for size in args.history_sizes.split(","))
    with tempfile.TemporaryDirectory(prefix="kafka-bench-") as tmp:
        work = Path(tmp)
        env = {
            **os.environ, "PYTHONPATH": str(settings.PROJECT_ROOT),
            "PIPELINE_OUTPUT_DIR": str(work / "output"), "KAFKA_HEAP": "1g",
        }
        env.pop("AIRFLOW_CONN_KAFKA_DEFAULT", None)
        if args.profile:
            profile(env, n, work)
            return 0
        if args.sink_history_only:
            history = sink_history(env, work, sizes, repeats)
            write(Report(repeats=repeats, sink_history=history), render_history(history, sizes))
            return 0
        if args.scaling_only:
            report = Report(n=n, repeats=repeats, scaling=scaling(env, work, n, repeats))
            if not args.skip_dag:
                add_dag_runs(report, dag_runs(env, work, n, repeats, SCALING_DAG_RUNS))
            write(report, render_scaling(report.scaling))
            return 0
        report = Report(n=n, repeats=repeats, series=series(env, work, n, repeats))
        report.scaling = scaling(env, work, n, repeats)
        if not args.skip_dag:
            add_dag_runs(report, dag_runs(env, work, n, repeats, DAG_RUNS))
        report.sink_history = sink_history(env, work, sizes, repeats)
    write(report, "\n\n".join([
        render(report), render_scaling(report.scaling), render_history(report.sink_history, sizes),
    ]))
    return 0


def add_dag_runs(report: Report, runs: dict[tuple[str, int], DagRun]) -> None:
    """The DAG runs into ``report``: each series' at one worker, and scaling's by workers."""
    for mix, one in (report.series or {}).items():
        one.dag = runs[mix, 1]
    report.scaling.dag_run_seconds = {w: runs["default", w].dag_seconds for w in DAG_RUN_WORKERS}


if __name__ == "__main__":
    sys.exit(main())
