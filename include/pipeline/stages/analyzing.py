"""analyze: 1-minute tumbling windows per product, from processed-orders to product-metrics."""

from __future__ import annotations

import logging
import time

from confluent_kafka import Message

from include.pipeline import settings
from include.pipeline.domain import (
    money,
    state_codec,
    steps,
)
from include.pipeline.domain.analyzer import Analyzer
from include.pipeline.domain.assignment import Assignment
from include.pipeline.domain.dedup import SeenOrders
from include.pipeline.kafka_io.client import Kafka
from include.pipeline.kafka_io.reading import Follow
from include.pipeline.metrics import counting
from include.pipeline.run.results import (
    AnalyzeResult,
)
from include.pipeline.stages.state import counted, restore_analyzers, send_state
from include.pipeline.stages.transform import TransformLoop
from include.pipeline.store.spill import SpillFiles
from include.pipeline.topology import ANALYZE

log = logging.getLogger(__name__)

# Following, analyze forgets closed windows and old order ids this often (a bounded run does
# it once, at its end).
EXPIRE_SECONDS = 60.0


def analyze(
    kafka: Kafka, grace_seconds: float = settings.GRACE_SECONDS,
    dedup_horizon_seconds: float = settings.DEDUP_HORIZON_SECONDS, follow: Follow | None = None,
    workers: int = 1, worker: int = 0,
) -> AnalyzeResult:
    """processed-orders -> 1-minute tumbling windows per product -> product-metrics.

    Each partition of processed-orders is counted with a state of its own (its windows, the
    order ids it counted, its stream time, its ledger), so ``workers`` instances each count their
    share of the partitions, and the metrics are partials per partition that the sink adds up.
    Duplicates and late orders go to orders-dlq. The changed partials, the state that carries
    them to the next run (analyze-state) and the consumed offsets commit in one transaction per
    batch.
    """
    with TransformLoop(kafka, ANALYZE, follow, Assignment(workers, worker)) as loop:
        analyzers = restore_analyzers(
            kafka, loop.partitions,
            lambda: Analyzer.create(grace_seconds, dedup_horizon_seconds, SeenOrders(SpillFiles())),
        )
        before = counted(analyzers)
        stale = _expired(analyzers)  # what a run that died before its last step left behind
        expire_at = time.monotonic() + EXPIRE_SECONDS

        def step(batch: list[Message]) -> steps.Analyzed:
            nonlocal stale, expire_at
            out = steps.analyze(analyzers, batch)
            if follow is not None and time.monotonic() >= expire_at:
                out.state += stale + _expired(analyzers)
                stale, expire_at = [], time.monotonic() + EXPIRE_SECONDS
            return out

        loop.run(step, lambda out: counting.analyzed(ANALYZE.name, out.counted, *_sizes(analyzers)))
        tombstones = stale + _expired(analyzers)
        if tombstones:
            loop.txns.run(lambda producer: send_state(producer, tombstones, loop.changelog))
    after = counted(analyzers)
    open_windows, remembered_order_ids = _sizes(analyzers)
    counting.analyzed(ANALYZE.name, 0, open_windows, remembered_order_ids)  # what the expiry left
    return AnalyzeResult(
        input=loop.input, read=loop.read, reasons=dict(loop.reasons), written=loop.written_to(),
        written_upto=loop.txns.written_upto(), counted=after.count - before.count,
        counted_revenue=money.subtract(after.revenue, before.revenue),
        ledger_before=before, ledger_after=after,
        open_windows=open_windows, remembered_order_ids=remembered_order_ids,
    )


def _sizes(analyzers: dict[int, Analyzer]) -> tuple[int, int]:
    """The state's size: open (window, product) aggregates and remembered order ids."""
    windows = sum(len(a.windows.aggregates) for a in analyzers.values())
    return windows, sum(len(a.seen) for a in analyzers.values())


def _expired(analyzers: dict[int, Analyzer]) -> list[tuple[bytes, bytes | None]]:
    return [record for p, a in analyzers.items() for record in state_codec.scoped(p, a.expire())]
