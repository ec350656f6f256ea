"""Scaling over partitions: process and analyze as 1, 2 and 3 workers (a process each, on their
shares of the partitions, started together) over the same N orders on a fresh broker each, with
that broker's raw consume baseline and a worker's peak RSS at N and (2 workers) N/10."""

from __future__ import annotations

from pathlib import Path

from scripts.bench.measure import fresh_topics, measure, measure_workers
from scripts.bench.results import Scaling, ScalingRow
from scripts.kafka.local import throwaway_broker

SCALING_WORKERS = (1, 2, 3)


def scaling(env: dict, work: Path, n: int) -> Scaling:
    """process and analyze as 1, 2 and 3 workers over the same n orders (generated with one seed),
    each count on a fresh broker, warmed; the raw consume baseline of the same broker; the peak RSS of
    one worker at n and n/10 (2 workers)."""
    report = Scaling()
    for workers in SCALING_WORKERS:
        with throwaway_broker(work / f"kafka-w{workers}", env) as kafka_env:
            fresh_topics(kafka_env)
            measure(kafka_env, "generate", n, "-")
            # A running cluster's JIT has compiled its produce, fetch and transaction paths; a fresh
            # one compiles them during the first stage measured (a third of the broker's CPU in
            # a 400,000-order run): the same work through it once, first.
            measure(kafka_env, "consume_produce", n, "-")
            consume = measure(kafka_env, "consume", n, "-")
            report.consume_baseline_orders_per_s[workers] = round(consume.rate(n))
            for stage, rows in (("process", report.process), ("analyze", report.analyze)):
                step = measure_workers(kafka_env, stage, n, workers)
                assert step.records == n, (stage, workers, step)
                rows[workers] = ScalingRow(
                    orders_per_s=round(step.rate(n)), seconds=round(step.seconds, 2),
                    peak_rss_mb_per_worker=step.peak_rss_mb,
                )
    with throwaway_broker(work / "kafka-w2-small", env) as kafka_env:
        fresh_topics(kafka_env)
        measure(kafka_env, "generate", n // 10, "-")
        for stage, rows in (("process", report.process), ("analyze", report.analyze)):
            rows[2].peak_rss_mb_per_worker_small = measure_workers(kafka_env, stage, n // 10, 2).peak_rss_mb
    return report
