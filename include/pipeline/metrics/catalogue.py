"""Every metric of the pipeline, defined once (``DEFINITIONS``: name, type, labels, meaning,
buckets), and ``Metrics``, the live metrics of one registry. ``METRICS`` is the process's, on a
registry of its own rather than prometheus_client's global one: a /metrics server or a push
then carries the pipeline's metrics only, and a test builds a ``Metrics`` of its own to read
exact values from."""

from __future__ import annotations

import bisect
import math
import threading
from typing import Callable, Iterator, Mapping, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


class Definition(NamedTuple):
    """One metric: its exposed name (a counter's with ``_total``), type, meaning and labels."""

    name: str
    kind: str  # counter, gauge or histogram
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


STAGE, TOPIC = ("stage",), ("stage", "topic")
# A batch commits every commit_interval_ms following (100 ms by default), and a bounded batch of
# 10,000 records takes tens of ms to seconds.
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Around the 1 s that the p99 alert watches, finer.
LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)

RECORDS_READ = Definition("kafka_pipeline_records_read_total", "counter", "records a stage read", TOPIC)
RECORDS_WRITTEN = Definition(
    "kafka_pipeline_records_written_total", "counter",
    "records a stage committed to its output topic (generate: orders generated)", TOPIC,
)
DEAD_LETTERS = Definition(
    "kafka_pipeline_dead_letters_total", "counter", "records dead-lettered, by reason", ("stage", "reason"),
)
ORDERS_COUNTED = Definition(
    "kafka_pipeline_orders_counted_total", "counter",
    "valid orders analyze counted into windows (equals the store's order count)", STAGE,
)
TRANSACTIONS = Definition(
    "kafka_pipeline_transactions_total", "counter", "Kafka transactions, committed or aborted",
    ("stage", "outcome"),
)
BATCH_SECONDS = Definition(
    "kafka_pipeline_batch_seconds", "histogram", "seconds a batch took, read to commit", STAGE, BATCH_BUCKETS,
)
END_TO_END_LATENCY = Definition(
    "kafka_pipeline_end_to_end_latency_seconds", "histogram",
    "continuous mode: an order's produce time to its metric's commit by sink", (), LATENCY_BUCKETS,
)
CONSUMER_LAG = Definition(
    "kafka_pipeline_consumer_lag_records", "gauge",
    "records of the input not yet read by the stage's group", ("stage", "topic", "partition"),
)
KAFKA_UNAVAILABLE = Definition(
    "kafka_pipeline_kafka_unavailable_seconds_total", "counter",
    "seconds Kafka did not answer; grows while an outage lasts (read at scrape/push time)", STAGE,
)
OPEN_WINDOWS = Definition("kafka_pipeline_open_windows", "gauge", "analyze's open windows", STAGE)
REMEMBERED_ORDER_IDS = Definition(
    "kafka_pipeline_remembered_order_ids", "gauge", "analyze's remembered order ids (the dedup set)", STAGE,
)
STORE_ROWS_WRITTEN = Definition(
    "kafka_pipeline_store_rows_written_total", "counter", "rows sink wrote to the store", STAGE,
)
RECONCILE_LAST_SUCCESS = Definition(
    "kafka_pipeline_reconcile_last_success_timestamp_seconds", "gauge", "when a run last reconciled",
    ("dag_id",),
)
RECONCILE_DISCREPANCIES = Definition(
    "kafka_pipeline_reconcile_discrepancies", "gauge",
    "discrepancies the last reconcile found (0 when it passed)", ("dag_id",),
)

DEFINITIONS = (
    RECORDS_READ, RECORDS_WRITTEN, DEAD_LETTERS, ORDERS_COUNTED, TRANSACTIONS, BATCH_SECONDS,
    END_TO_END_LATENCY, CONSUMER_LAG, KAFKA_UNAVAILABLE, OPEN_WINDOWS, REMEMBERED_ORDER_IDS,
    STORE_ROWS_WRITTEN, RECONCILE_LAST_SUCCESS, RECONCILE_DISCREPANCIES,
)


class WeightedHistogram(Collector):
    """A histogram without labels observed in (value, how many) pairs: the sink measures a batch's
    latencies as counts per millisecond (``telemetry.Latencies``), and prometheus_client's
    Histogram would need an observe() call per order."""

    def __init__(self, definition: Definition) -> None:
        self.definition = definition
        self.bounds = (*definition.buckets, math.inf)
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0
        self.lock = threading.Lock()  # observed by the stage, collected by the /metrics server's thread

    def observe(self, counts: Mapping[float, int]) -> None:
        """Counts ``counts[value]`` observations of each value."""
        with self.lock:
            for value, n in counts.items():
                self.counts[bisect.bisect_left(self.bounds, value)] += n
                self.sum += value * n

    def collect(self) -> Iterator[Metric]:
        """The histogram's family, its buckets cumulative as Prometheus has them."""
        family = self.describe()[0]
        with self.lock:
            counts, total = list(self.counts), self.sum
        seen, buckets = 0, []
        for bound, n in zip(self.bounds, counts):
            seen += n
            buckets.append((floatToGoString(bound), seen))
        family.add_metric([], buckets, total)
        yield family

    def describe(self) -> list[Metric]:
        """The family without samples (what a registry checks names against)."""
        return [HistogramMetricFamily(self.definition.name, self.definition.help, labels=())]


class StageClock(Collector):
    """A counter by stage of the seconds a clock of the process (``track``) advanced while that
    stage ran, read at collect time, so it grows while what it measures lasts (Kafka not
    answering: ``kafka_io.errors.Outage.seconds``). A process that runs several stages one after
    another (the tests' in-process runs) gives each its own share."""

    def __init__(self, definition: Definition) -> None:
        self.definition = definition
        self.kept: dict[str, float] = {}
        self.stage: str | None = None
        self.clock: Callable[[], float] | None = None
        self.base = 0.0
        self.lock = threading.Lock()

    def track(self, stage: str, clock: Callable[[], float]) -> None:
        """From now on, what ``clock`` advances is ``stage``'s."""
        with self.lock:
            self.kept = self._values()
            self.stage, self.clock, self.base = stage, clock, clock()
            self.kept.setdefault(stage, 0.0)

    def _values(self) -> dict[str, float]:
        values = dict(self.kept)
        if self.clock is not None:
            values[self.stage] += self.clock() - self.base
        return values

    def collect(self) -> Iterator[Metric]:
        """The counter's family, each stage's value as of now."""
        family = self.describe()[0]
        with self.lock:
            values = self._values()
        for stage, seconds in sorted(values.items()):
            family.add_metric([stage], seconds)
        yield family

    def describe(self) -> list[Metric]:
        """The family without samples (what a registry checks names against)."""
        definition = self.definition
        return [CounterMetricFamily(definition.name, definition.help, labels=definition.labels)]


def _standard(definition: Definition, registry: CollectorRegistry):
    kind = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}[definition.kind]
    extra = {"buckets": definition.buckets} if definition.buckets else {}
    return kind(definition.name, definition.help, definition.labels, registry=registry, **extra)


class Metrics:
    """The pipeline's metrics, live, on ``registry`` (a new one if not given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry = registry if registry is not None else CollectorRegistry()
        self.records_read = _standard(RECORDS_READ, registry)
        self.records_written = _standard(RECORDS_WRITTEN, registry)
        self.dead_letters = _standard(DEAD_LETTERS, registry)
        self.orders_counted = _standard(ORDERS_COUNTED, registry)
        self.transactions = _standard(TRANSACTIONS, registry)
        self.batch_seconds = _standard(BATCH_SECONDS, registry)
        self.end_to_end_latency = WeightedHistogram(END_TO_END_LATENCY)
        registry.register(self.end_to_end_latency)
        self.consumer_lag = _standard(CONSUMER_LAG, registry)
        self.kafka_unavailable = StageClock(KAFKA_UNAVAILABLE)
        registry.register(self.kafka_unavailable)
        self.open_windows = _standard(OPEN_WINDOWS, registry)
        self.remembered_order_ids = _standard(REMEMBERED_ORDER_IDS, registry)
        self.store_rows_written = _standard(STORE_ROWS_WRITTEN, registry)
        self.reconcile_last_success = _standard(RECONCILE_LAST_SUCCESS, registry)
        self.reconcile_discrepancies = _standard(RECONCILE_DISCREPANCIES, registry)


METRICS = Metrics()  # the process's


def table() -> str:
    """The metrics as the docs list them (docs/operations/observability.md), a Markdown table."""
    rows = [
        f"| {d.name} | {d.kind} | {', '.join(d.labels) or '(none)'} | {d.help} |" for d in DEFINITIONS
    ]
    return "\n".join(["| metric | type | labels | meaning |", "|---|---|---|---|", *rows])
