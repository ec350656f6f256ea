"""What the benchmark measures, as typed records: a step as a child process reports it, and the
report's parts as output/bench.json holds them (``msgspec.to_builtins`` at the edge).

Field names are bench.json's keys; a part the run left out is None and not written. Keys by
workers or store size are ints here and strings in the JSON.
"""

from __future__ import annotations

import msgspec

ENGINES = ("sqlite", "postgresql")  # the metrics store's engines sink_history measures


class Step(msgspec.Struct, kw_only=True):
    """One measured step (or a step's workers taken together): its seconds, the records it read or
    wrote, its peak RSS (a worker's largest), and when it started and ended (epoch seconds)."""

    seconds: float
    records: int
    peak_rss_mb: float
    started: float
    ended: float

    def rate(self, n: int) -> float:
        """Orders through the step per second (the sink reads window records, not orders)."""
        return n / self.seconds


class BaselineRow(msgspec.Struct, kw_only=True):
    """A client baseline over N orders: its rate and peak RSS."""

    orders_per_s: int
    peak_rss_mb: float


class StageRow(msgspec.Struct, kw_only=True):
    """A stage alone over N orders: its rate, the records it read, its seconds, its rate against
    its baseline's (None: generate has none), and its peak RSS at N and at N/10."""

    orders_per_s: int
    records_read: int
    seconds: float
    ratio: float | None
    peak_rss_mb: float
    peak_rss_mb_small: float


class ScalingRow(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A stage as some number of workers over N orders: its rate, its seconds, the peak RSS of one
    worker, and at N/10 (measured at 2 workers only)."""

    orders_per_s: int
    seconds: float
    peak_rss_mb_per_worker: float
    peak_rss_mb_per_worker_small: float | None = None


class Scaling(msgspec.Struct, kw_only=True, omit_defaults=True):
    """process and analyze by workers, the consume baseline of each one's broker, and the whole
    DAG run's seconds by workers (None: left out)."""

    process: dict[int, ScalingRow] = {}
    analyze: dict[int, ScalingRow] = {}
    consume_baseline_orders_per_s: dict[int, int] = {}
    dag_run_seconds: dict[int, float] | None = None


class DagRun(msgspec.Struct, kw_only=True):
    """A whole kafka_pipeline run: its seconds, its stages' share of them, and Airflow's."""

    dag_seconds: float
    dag_stage_seconds: float
    dag_airflow_overhead_seconds: float


class HistoryRow(msgspec.Struct, kw_only=True):
    """The sink onto a store of some size: its seconds and peak RSS, and the page's seconds."""

    seconds: float
    peak_rss_mb: float
    page_seconds: float


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
    """output/bench.json: the baselines and stages over N orders, scaling, the whole DAG run and
    sink_history (the DAG run's fields those of the 1-worker DagRun); a part left out is None."""

    n: int | None = None
    baseline: dict[str, BaselineRow] | None = None
    stages: dict[str, StageRow] | None = None
    stage_seconds_process_analyze_sink: float | None = None
    scaling: Scaling | None = None
    dag_seconds: float | None = None
    dag_stage_seconds: float | None = None
    dag_airflow_overhead_seconds: float | None = None
    sink_history: SinkHistory | None = None
