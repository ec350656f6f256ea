"""sink: the window partials of product-metrics into the metrics store, and metrics.json."""

from __future__ import annotations

import logging
import time
from contextlib import closing
from pathlib import Path

from confluent_kafka import Message

from include.pipeline import settings
from include.pipeline.domain import (
    telemetry,
)
from include.pipeline.domain.windows import (
    LedgerMark,
    Partial,
    decode_partial,
    ledger_of,
)
from include.pipeline.kafka_io import access
from include.pipeline.kafka_io.client import Kafka
from include.pipeline.kafka_io.errors import OUTAGE, retrying
from include.pipeline.kafka_io.reading import BoundedRead, Follow
from include.pipeline.metrics import counting
from include.pipeline.run.results import (
    Export,
    SinkResult,
)
from include.pipeline.stages import shutdown
from include.pipeline.stages.progress import Progress
from include.pipeline.stages.transform import ranges
from include.pipeline.store.changes import Changes
from include.pipeline.store.metrics_store import MetricsStore
from include.pipeline.topology import SINK

log = logging.getLogger(__name__)



def sink(
    kafka: Kafka, store: MetricsStore | None = None, metrics_json_days: int = settings.METRICS_JSON_DAYS,
    follow: Follow | None = None,
) -> SinkResult:
    """product-metrics -> the metrics store (upserted by window and product), then the
    metrics.json export of its last ``metrics_json_days`` days (0: no export).

    Each batch's rows, the store's totals, the newest analyze ledger its records carry (what the
    totals add up to: reconcile compares the two) and the offsets read up to commit in one
    database transaction, and a run resumes from the store's offsets, so a crash at any point
    neither applies a batch twice nor skips one. A store without rows reads the (compacted)
    topic from its start, or, when it imports an old metrics.json, from the group's offsets that
    file was written up to. The group's offsets are committed afterwards, for Kafka tools to see the lag.
    """
    if metrics_json_days < 0:
        raise ValueError(f"metrics_json_days must be 0 (no export) or more, got {metrics_json_days}")
    store = store or MetricsStore.default()
    counting.stage_started(SINK.name, OUTAGE.seconds)
    access.ready(kafka, [SINK.name])
    cluster = kafka.cluster_id()
    opened = store.open(cluster)
    imports = settings.metrics_path() if opened.new and settings.metrics_path().exists() else None
    inserted = updated = imported = 0
    progress = Progress(f"sink {settings.METRICS} -> {store.name}")
    with closing(kafka.consumer(SINK.group, follow=follow is not None)) as consumer:
        starts = None if imports else opened.offsets
        source = BoundedRead(
            consumer, settings.METRICS, admin=kafka.admin(), starts=starts, follow=follow,
            stop=shutdown.reason,
        )
        stored, claimed = opened.offsets, not opened.new
        started = time.monotonic()
        for batch in source:
            changes = _store_batch(store, cluster, batch, stored, dict(source.next), imports)
            stored, claimed = dict(source.next), True
            inserted, updated = inserted + changes.inserted, updated + changes.updated
            imported += changes.imported
            progress.add(len(batch))
            counting.batch(SINK.name, time.monotonic() - started, read=(settings.METRICS, len(batch)))
            counting.store_rows(SINK.name, changes.inserted + changes.updated)
            counting.lag(SINK.name, settings.METRICS, source.behind())
            if follow is not None:
                _visible(follow, batch, changes.inserted + changes.updated)
                if positions := source.positions():  # for Kafka tools to see the lag as it goes
                    consumer.commit(offsets=positions, asynchronous=True)
            started = time.monotonic()
        counting.lag(SINK.name, settings.METRICS, source.behind())  # a read with no batch too
        if not claimed:  # a new store is claimed (and imports) even with nothing to read
            imported = _store_batch(store, cluster, [], stored, stored, imports).imported
        if positions := source.positions():
            retrying(consumer.commit, offsets=positions, asynchronous=False)
    progress.done()
    totals = store.totals()
    return SinkResult(
        input=ranges(settings.METRICS, source), read=progress.count, store=store.name, imported=imported,
        rows_inserted=inserted, rows_updated=updated, metrics=totals.rows,
        order_count=totals.order_count, total_revenue=totals.total_revenue,
        counted_revenue=totals.counted_revenue, ledger=totals.ledger,
        export=export_metrics_json(store, metrics_json_days),
    )


def _store_batch(
    store: MetricsStore, cluster: str, batch: list[Message], read_from: dict[int, int],
    read_to: dict[int, int], imports: Path | None,
) -> Changes:
    """One sink transaction; returns what it changed (an import included)."""
    records = [_partial(message) for message in batch]
    ledgers = [_mark(message) for message in batch]
    with store.transaction(cluster, read_from, imports) as txn:
        changes = txn.apply(records)
        txn.totals.note(ledgers)
        txn.set_offsets(settings.METRICS, read_to)
    changes.imported = txn.imported
    return changes


def _visible(follow: Follow, batch: list[Message], changed: int) -> None:
    """Report a following sink's batch: its orders' end-to-end latencies end now, as its totals
    become visible to readers."""
    visible_ms, since_ms = int(time.time() * 1000), int(follow.measure_since * 1000)
    latencies = telemetry.Latencies()
    for message in batch:
        latencies.add_origins(telemetry.origins(message.headers()), visible_ms, since_ms)
    counting.latencies(latencies.counts)
    follow.committed(SINK.name, len(batch), changed, latencies)


def export_metrics_json(store: MetricsStore, days: int) -> Export | None:
    """Replace metrics.json with the store's last ``days`` days of windows (0: leave it alone)."""
    path = settings.metrics_path()
    if not days:
        if path.exists():
            log.warning("metrics_json_days is 0: %s was left as it was and is no longer updated", path)
        return None
    export = Export(path=str(path), days=days, lines=store.export(path, days))
    log.info("exported the last %d days of windows to %s: %d lines", days, path, export.lines)
    return export


def _partial(message: Message) -> Partial:
    try:
        return decode_partial(message.value())
    except ValueError as exc:
        raise ValueError(f"{_where(message)}: {exc}") from None


def _mark(message: Message) -> LedgerMark | None:
    try:
        return ledger_of(message.headers())
    except ValueError as exc:
        raise ValueError(f"{_where(message)}: {exc}") from None


def _where(message: Message) -> str:
    return f"{settings.METRICS} partition {message.partition()} offset {message.offset()}"
