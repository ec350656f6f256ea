"""The command line of ``python -m scripts.bench``: the whole benchmark, a part of it, the stages
under cProfile, or (--child) one measured step in this process."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import msgspec

from include.pipeline import settings
from scripts.bench import __doc__ as overview
from scripts.bench.child import child
from scripts.bench.dag_runs import dag_run_seconds, dag_runs
from scripts.bench.render import render, render_history, render_scaling, write
from scripts.bench.results import Report
from scripts.bench.scaling import scaling
from scripts.bench.series import profile, run_series, stage_report
from scripts.bench.sink_history import HISTORY_SIZES, sink_history
from scripts.kafka.local import throwaway_broker


def arguments() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m scripts.bench", description=overview.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="orders (default 1,000,000)")
    parser.add_argument("--child")
    parser.add_argument("--store", help="(child) the metrics store's URL")
    parser.add_argument("--share", help="(child) as worker i of n: i/n")
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
    return args


def main() -> int:
    """Run the benchmark (all of it, the sink_history part alone, or the stages under cProfile)
    and write its report; with --child, one measured step of it."""
    args = arguments()
    if args.child:
        child(args.child, args.n, args.store, args.profile_to, args.share)
        return 0
    n, small = args.n, args.n // 10
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
            history = sink_history(env, work, sizes)
            write(Report(sink_history=history), render_history(history, sizes))
            return 0
        if args.scaling_only:
            report = Report(n=n, scaling=scaling(env, work, n))
            if not args.skip_dag:
                report.scaling.dag_run_seconds = dag_run_seconds(dag_runs(env, work, n))
            write(report, render_scaling(report.scaling))
            return 0
        with throwaway_broker(work / "kafka-n", env) as kafka_env:
            big, baselines = run_series(kafka_env, n, work, with_baselines=True)
        with throwaway_broker(work / "kafka-small", env) as kafka_env:
            smaller, _ = run_series(kafka_env, small, work, with_baselines=False)
        report = stage_report(n, big, smaller, baselines)
        report.scaling = scaling(env, work, n)
        if not args.skip_dag:
            runs = dag_runs(env, work, n)
            report = msgspec.structs.replace(report, **msgspec.structs.asdict(runs[1]))
            report.scaling.dag_run_seconds = dag_run_seconds(runs)
        report.sink_history = sink_history(env, work, sizes)
    write(report, "\n\n".join([
        render(report), render_scaling(report.scaling), render_history(report.sink_history, sizes),
    ]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
