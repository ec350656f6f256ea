"""Scaling over partitions: process and analyze as 1, 2 and 3 workers (a process each, on their
shares of the partitions, started together) over the same N orders (the DAG's input mix) on a
fresh, warmed broker each, with that broker's raw consume baseline, a worker's peak RSS at N and
(2 workers) N/10, and the workers' CPU and the broker's a record; each figure over the
repetitions."""

from __future__ import annotations

import os
from pathlib import Path

from include.pipeline import settings
from scripts.bench.counts import check, series_problems
from scripts.bench.measure import fresh_topics, measure, measure_workers
from scripts.bench.results import MIXES, Figure, Scaling, ScalingRow, Step
from scripts.bench.warm_up import warmed_broker

SCALING_WORKERS = (1, 2, 3)
STAGES = ("process", "analyze")


def scaling(env: dict, work: Path, n: int, repeats: int) -> Scaling:
    """process and analyze as 1, 2 and 3 workers over the same n orders (generated with one seed),
    each count ``repeats`` times on a fresh broker; the raw consume baseline of the same broker;
    the peak RSS of one worker at n and n/10 (2 workers)."""
    runs: dict[int, list[dict[str, Step]]] = {workers: [] for workers in SCALING_WORKERS}
    small: list[dict[str, Step]] = []
    for repeat in range(repeats):
        for workers in SCALING_WORKERS:
            runs[workers].append(run_workers(env, work / f"kafka-w{workers}-{repeat}", n, workers))
        small.append(run_workers(env, work / f"kafka-w2-small-{repeat}", n // 10, 2))
    # The bench's children and its broker all run on the cores this process may use.
    return scaling_report(runs, small, settings.partitions(), len(os.sched_getaffinity(0)))


def scaling_report(
    runs: dict[int, list[dict[str, Step]]], small: list[dict[str, Step]], partitions: int, cores: int,
) -> Scaling:
    """The scaling part from its repetitions (``runs`` by workers, ``small``: at 2 workers and
    N/10), on topics of ``partitions`` partitions and ``cores`` cores: each figure over them."""
    report = Scaling(partitions=partitions, cores=cores)
    for workers, steps in runs.items():
        report.consume_baseline_records_per_s[workers] = Figure.of(s["consume"].rate for s in steps)
        for stage, rows in (("process", report.process), ("analyze", report.analyze)):
            rows[workers] = ScalingRow(
                records_per_s=Figure.of(s[stage].rate for s in steps),
                seconds=Figure.of((s[stage].seconds for s in steps), 2),
                peak_rss_mb_per_worker=Figure.of((s[stage].peak_rss_mb for s in steps), 1),
                cpu_us_per_record=Figure.of((s[stage].cpu_us_per_record for s in steps), 2),
                broker_cpu_us_per_record=Figure.of((s[stage].broker_cpu_us_per_record for s in steps), 2),
            )
    for stage, rows in (("process", report.process), ("analyze", report.analyze)):
        rows[2].peak_rss_mb_per_worker_small = Figure.of((s[stage].peak_rss_mb for s in small), 1)
    return report


def run_workers(env: dict, data_dir: Path, n: int, workers: int) -> dict[str, Step]:
    """On a fresh, warmed broker: n orders generated, the consume baseline, then process and
    analyze as ``workers`` workers; the steps by name, each having read what it should."""
    with warmed_broker(data_dir, env, n) as kafka_env:
        fresh_topics(kafka_env)
        steps = {
            "generate": measure(kafka_env, "generate", n, "-", invalid_ratio=MIXES["default"]),
            "consume": measure(kafka_env, "consume", n, "-"),
        }
        for stage in STAGES:
            steps[stage] = measure_workers(kafka_env, stage, n, workers)
    check(f"scaling, {workers} worker(s) over {n:,} orders", series_problems(n, steps))
    return steps
