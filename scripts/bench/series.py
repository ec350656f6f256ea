"""The stage series: the baselines and each stage alone over N orders on a fresh broker, as the
report's baselines and stages (rates, ratios to their baseline, peak RSS at N and N/10); and the
same series under cProfile (--profile)."""

from __future__ import annotations

from pathlib import Path

from include.pipeline import settings, topology
from scripts.bench.baselines import BASELINE_FOR
from scripts.bench.measure import fresh_topics, measure
from scripts.bench.results import BaselineRow, Report, StageRow, Step
from scripts.kafka.local import throwaway_broker

STAGES = topology.names(topology.PIPELINE)


def run_series(
    env: dict, n: int, work: Path, with_baselines: bool, profiles: Path | None = None,
) -> tuple[dict[str, Step], dict[str, Step]]:
    """Fresh topics (a fresh broker), then the baselines and the stages over n orders: the stages'
    steps and the baselines' (none without ``with_baselines``), by name."""
    fresh_topics(env)
    store = f"sqlite:///{work / f'metrics-{n}.db'}"
    results = {"generate": measure(env, "generate", n, store, profiles)}
    baselines = {}
    if with_baselines:
        baselines = {what: measure(env, what, n, store) for what in ("consume", "consume_produce")}
    for stage in STAGES[1:]:
        results[stage] = measure(env, stage, n, store, profiles)
    return results, baselines


def stage_report(
    n: int, big: dict[str, Step], smaller: dict[str, Step], baselines: dict[str, Step],
) -> Report:
    """The report's baselines and stages: rates, ratios to their baseline, peak memory at N and N/10."""
    baseline = {
        what: BaselineRow(orders_per_s=round(step.rate(n)), peak_rss_mb=step.peak_rss_mb)
        for what, step in baselines.items()
    }
    stages = {}
    for stage in STAGES:
        step = big[stage]
        base = BASELINE_FOR[stage]
        stages[stage] = StageRow(
            orders_per_s=round(step.rate(n)),
            records_read=step.records,
            seconds=round(step.seconds, 2),
            ratio=round(step.rate(n) / baseline[base].orders_per_s, 2) if base else None,
            peak_rss_mb=step.peak_rss_mb,
            peak_rss_mb_small=smaller[stage].peak_rss_mb,
        )
    return Report(
        n=n, baseline=baseline, stages=stages,
        stage_seconds_process_analyze_sink=round(sum(big[s].seconds for s in STAGES[1:]), 2),
    )


def profile(env: dict, n: int, work: Path) -> None:
    """Each stage once under cProfile; its top functions to output/profiles/<stage>.txt."""
    profiles = settings.output_dir() / "profiles"
    profiles.mkdir(parents=True, exist_ok=True)
    with throwaway_broker(work / "kafka-profile", env) as kafka_env:
        run_series(kafka_env, n, work, with_baselines=False, profiles=profiles)
    for stage in STAGES:
        print(f"{profiles / stage}.txt")
