"""What the benchmark measures, as typed records: a step as a child process reports it, a figure
over the repetitions (its median and spread), and the report's parts as output/bench.json holds
them (``msgspec.to_builtins`` at the edge).

Field names are bench.json's keys; a part the run left out is None and not written. Keys by
workers or store size are ints here and strings in the JSON.
"""

from __future__ import annotations

import statistics
from typing import Iterable

import msgspec

from include.pipeline.run.params import CATALOGUE

ENGINES = ("sqlite", "postgresql")  # the metrics store's engines sink_history measures
# The inputs measured, by name: invalid_ratio, the DAG's default (what users run) and the best case.
MIXES = {"default": CATALOGUE["invalid_ratio"].default, "best_case": 0.0}


class Figure(msgspec.Struct, kw_only=True):
    """A figure measured once per repetition: the median of the samples, and their spread."""

    median: float
    min: float
    max: float

    @classmethod
    def of(cls, samples: Iterable[float], digits: int | None = None) -> Figure:
        """The figure of ``samples``, each value rounded to ``digits`` (None: a whole number)."""
        values = sorted(samples)
        median, low, high = statistics.median(values), values[0], values[-1]
        return cls(median=round(median, digits), min=round(low, digits), max=round(high, digits))


class Step(msgspec.Struct, kw_only=True):
    """One measured step (or a step's workers taken together): its seconds, the records it read
    (generate: wrote), the records it wrote to its output topic (0: none), its peak RSS (a
    worker's largest), when it started and ended (epoch seconds), the CPU seconds (user + sys, all
    its threads) its process used over ``seconds`` (workers: theirs together) and the broker's
    over the step (from just before its process started to its end; 0: not measured)."""

    seconds: float
    records: int
    written: int = 0
    peak_rss_mb: float
    started: float
    ended: float
    cpu_seconds: float = 0.0
    broker_cpu_seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Records through the step a second (the sink's are window partials, not orders)."""
        return self.records / self.seconds

    @property
    def cpu_us_per_record(self) -> float:
        """The step's own CPU a record read, in microseconds."""
        return self.cpu_seconds * 1e6 / self.records

    @property
    def broker_cpu_us_per_record(self) -> float:
        """The broker's CPU over the step a record read, in microseconds."""
        return self.broker_cpu_seconds * 1e6 / self.records


class BaselineRow(msgspec.Struct, kw_only=True):
    """A client baseline over the N orders: its rate, peak RSS, and its own and the broker's CPU a
    record (None: a bench.json from before they were measured)."""

    records_per_s: Figure
    peak_rss_mb: Figure
    cpu_us_per_record: Figure | None = None
    broker_cpu_us_per_record: Figure | None = None


class StageRow(msgspec.Struct, kw_only=True):
    """A stage alone over N orders: its rate, the records it read (generate: wrote) and wrote to
    its output topic (analyze's partials depend on where its batches end), its seconds, its rate
    against its baseline's in the same repetition (None: none, ``BASELINE_FOR``), its peak RSS at
    N and at N/10, and its own and the broker's CPU a record read (None: a bench.json from before
    they were measured)."""

    records_per_s: Figure
    records_read: Figure
    records_written: Figure
    seconds: Figure
    ratio: Figure | None
    peak_rss_mb: Figure
    peak_rss_mb_small: Figure
    cpu_us_per_record: Figure | None = None
    broker_cpu_us_per_record: Figure | None = None


class DagRun(msgspec.Struct, kw_only=True):
    """Whole kafka_pipeline runs: their seconds, their stages' share of them, and Airflow's."""

    dag_seconds: Figure
    dag_stage_seconds: Figure
    dag_airflow_overhead_seconds: Figure


class Series(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The baselines and stages over N orders of one input mix (``invalid_ratio``), and the whole
    DAG run of the same mix at one worker (None: left out)."""

    invalid_ratio: float
    baseline: dict[str, BaselineRow]
    stages: dict[str, StageRow]
    stage_seconds_process_analyze_sink: Figure
    dag: DagRun | None = None


class ScalingRow(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A stage as some number of workers over N orders: its rate, its seconds, the peak RSS of one
    worker, and at N/10 (measured at 2 workers only); the workers' CPU and the broker's a record
    read (None: a bench.json from before they were measured)."""

    records_per_s: Figure
    seconds: Figure
    peak_rss_mb_per_worker: Figure
    peak_rss_mb_per_worker_small: Figure | None = None
    cpu_us_per_record: Figure | None = None
    broker_cpu_us_per_record: Figure | None = None


class Scaling(msgspec.Struct, kw_only=True, omit_defaults=True):
    """process and analyze by workers, the consume baseline of each one's brokers, and the whole
    DAG run's seconds by workers (None: left out); the DAG's default input mix; the partitions of
    each topic the workers split, and the cores the broker and the workers shared (None: a
    bench.json from before they were written)."""

    partitions: int | None = None
    cores: int | None = None
    process: dict[int, ScalingRow] = {}
    analyze: dict[int, ScalingRow] = {}
    consume_baseline_records_per_s: dict[int, Figure] = {}
    dag_run_seconds: dict[int, Figure] | None = None


class HistoryRow(msgspec.Struct, kw_only=True):
    """The sink onto a store of some size: its seconds and peak RSS, and the page's seconds."""

    seconds: Figure
    peak_rss_mb: Figure
    page_seconds: Figure


class SinkHistory(msgspec.Struct, kw_only=True):
    """sink_history: reconcile's seconds at the largest store by engine, and each engine's rows by
    store size."""

    reconcile_seconds: dict[str, float] = {}
    sqlite: dict[int, HistoryRow] = {}
    postgresql: dict[int, HistoryRow] = {}

    def engine(self, name: str) -> dict[int, HistoryRow]:
        """The rows of the engine called ``name`` (sqlite or postgresql)."""
        return {"sqlite": self.sqlite, "postgresql": self.postgresql}[name]


class Report(msgspec.Struct, kw_only=True, omit_defaults=True):
    """output/bench.json: N, the repetitions each figure is the median of, the series by input mix
    (``MIXES``), scaling and sink_history; a part left out is None."""

    n: int | None = None
    repeats: int | None = None
    series: dict[str, Series] | None = None
    scaling: Scaling | None = None
    sink_history: SinkHistory | None = None
