"""The stage series: the baselines and each stage alone over N orders on a fresh broker, for each
input mix (``MIXES``) and repetition, as the report's series (rates, ratios to their baseline in
the same repetition, peak RSS at N and N/10); and the same series under cProfile (--profile)."""

from __future__ import annotations

from pathlib import Path

from include.pipeline import settings, topology
from scripts.bench.baselines import BASELINE_FOR
from scripts.bench.counts import check, series_problems
from scripts.bench.measure import fresh_topics, measure
from scripts.bench.results import MIXES, BaselineRow, Figure, Series, StageRow, Step
from scripts.bench.warm_up import warmed_broker

STAGES = topology.names(topology.PIPELINE)
BASELINES = ("consume", "consume_produce")

Run = tuple[dict[str, Step], dict[str, Step]]  # a repetition: the steps at N, the stages' at N/10


def series(env: dict, work: Path, n: int, repeats: int) -> dict[str, Series]:
    """Each mix's series over ``n`` orders, ``repeats`` times, the mixes taking turns (so that a
    slow spell of the machine does not fall on one of them)."""
    runs: dict[str, list[Run]] = {mix: [] for mix in MIXES}
    for repeat in range(repeats):
        for mix, invalid_ratio in MIXES.items():
            steps = []
            for size, baselines in ((n, True), (n // 10, False)):
                with warmed_broker(work / f"kafka-{mix}-{size}-{repeat}", env, size) as kafka_env:
                    steps.append(run_series(kafka_env, size, work, invalid_ratio, baselines))
            runs[mix].append((steps[0], steps[1]))
    return {mix: stage_report(MIXES[mix], mix_runs) for mix, mix_runs in runs.items()}


def run_series(
    env: dict, n: int, work: Path, invalid_ratio: float, with_baselines: bool, profiles: Path | None = None,
) -> dict[str, Step]:
    """Fresh topics (on a fresh, warmed broker), then generate, the baselines (none without
    ``with_baselines``) and the other stages over n orders, by name; each having read what it
    should (``series_problems``), or the bench stops."""
    fresh_topics(env)
    # A store holds one cluster's metrics: one of its own for each broker.
    store = "sqlite:///" + str(work / f"metrics-{Path(env['KAFKA_DATA_DIR']).name}.db")
    steps = {"generate": measure(env, "generate", n, store, profiles, invalid_ratio)}
    if with_baselines:
        steps.update({what: measure(env, what, n, store) for what in BASELINES})
    for stage in STAGES[1:]:
        steps[stage] = measure(env, stage, n, store, profiles)
    check(f"the series of {n:,} orders, invalid_ratio {invalid_ratio:g}", series_problems(n, steps))
    return steps


def stage_report(invalid_ratio: float, runs: list[Run]) -> Series:
    """One mix's series from its repetitions: rates, ratios to their baseline (each repetition's
    against its own), peak memory at N and N/10, the step's CPU and the broker's a record, each a
    Figure."""
    big = [steps for steps, _ in runs]
    baseline = {
        what: BaselineRow(
            records_per_s=Figure.of(steps[what].rate for steps in big),
            peak_rss_mb=Figure.of((steps[what].peak_rss_mb for steps in big), 1),
            cpu_us_per_record=Figure.of((steps[what].cpu_us_per_record for steps in big), 2),
            broker_cpu_us_per_record=Figure.of((steps[what].broker_cpu_us_per_record for steps in big), 2),
        )
        for what in BASELINES
    }
    stages = {}
    for stage in STAGES:
        base = BASELINE_FOR[stage]
        stages[stage] = StageRow(
            records_per_s=Figure.of(steps[stage].rate for steps in big),
            records_read=Figure.of(steps[stage].records for steps in big),
            records_written=Figure.of(steps[stage].written for steps in big),
            seconds=Figure.of((steps[stage].seconds for steps in big), 2),
            ratio=Figure.of((steps[stage].rate / steps[base].rate for steps in big), 2) if base else None,
            peak_rss_mb=Figure.of((steps[stage].peak_rss_mb for steps in big), 1),
            peak_rss_mb_small=Figure.of((small[stage].peak_rss_mb for _, small in runs), 1),
            cpu_us_per_record=Figure.of((steps[stage].cpu_us_per_record for steps in big), 2),
            broker_cpu_us_per_record=Figure.of((steps[stage].broker_cpu_us_per_record for steps in big), 2),
        )
    task_seconds = (sum(steps[stage].seconds for stage in STAGES[1:]) for steps in big)
    return Series(
        invalid_ratio=invalid_ratio, baseline=baseline, stages=stages,
        stage_seconds_process_analyze_sink=Figure.of(task_seconds, 2),
    )


def profile(env: dict, n: int, work: Path) -> None:
    """Each stage once under cProfile (the DAG's input mix); its top functions to
    output/profiles/<stage>.txt."""
    profiles = settings.output_dir() / "profiles"
    profiles.mkdir(parents=True, exist_ok=True)
    with warmed_broker(work / "kafka-profile", env, n) as kafka_env:
        run_series(kafka_env, n, work, MIXES["default"], with_baselines=False, profiles=profiles)
    for stage in STAGES:
        print(f"{profiles / stage}.txt")
