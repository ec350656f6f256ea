"""replay: windows rebuilt from processed-orders and republished to product-metrics."""

from __future__ import annotations

import logging
from contextlib import closing
from datetime import datetime, timezone

from confluent_kafka import TopicPartition

from include.pipeline import settings, topology
from include.pipeline.domain import (
    codec,
    dead_letters,
)
from include.pipeline.domain.orders import Order, parse
from include.pipeline.domain.windows import (
    LEGACY,
    Aggregate,
    Partial,
    TumblingWindows,
    partial_key_bytes,
)
from include.pipeline.kafka_io import access
from include.pipeline.kafka_io.admin import partition_count
from include.pipeline.kafka_io.client import TIMEOUT, Kafka
from include.pipeline.kafka_io.errors import retrying
from include.pipeline.kafka_io.reading import BoundedRead
from include.pipeline.kafka_io.writing import produce_all
from include.pipeline.run.results import (
    ReplayResult,
)
from include.pipeline.stages import shutdown
from include.pipeline.stages.producers import transactions
from include.pipeline.topology import ANALYZE, REPLAY

log = logging.getLogger(__name__)



def replay(kafka: Kafka, start: datetime, end: datetime, allow_partial: bool = False) -> ReplayResult:
    """Rebuild the metrics of the windows starting in [start, end) from processed-orders as Kafka
    retains it, and publish them to product-metrics (the sink then upserts them).

    It counts what the analyze stage counted: the records it has committed, less those it
    dead-lettered (late, duplicate, invalid: orders-dlq names their offsets), per partition as
    analyze does. Each window it rebuilds gets a partial of every partition (0 where it found
    none, ``LEGACY`` included): partials replace partials downstream, so nothing is counted twice.
    """
    access.ready(kafka, [REPLAY.name])
    low_s, high_s = (
        int((t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()) for t in (start, end)
    )
    upto = _analyzed_upto(kafka, allow_partial)
    rejected = _rejected_by_analyze(kafka)
    partitions = [LEGACY, *upto]
    windows = {partition: TumblingWindows() for partition in partitions}
    read = 0
    with closing(kafka.consumer(topology.group("replay-reader"))) as consumer:
        source = BoundedRead(
            consumer, settings.PROCESSED, admin=kafka.admin(), from_beginning=True, upto=upto,
            stop=shutdown.reason,
        )
        for batch in source:
            read += len(batch)
            counted: dict[int, list[Order]] = {partition: [] for partition in windows}
            for message in batch:
                if (message.partition(), message.offset()) not in rejected and type(
                    order := parse(message.value())
                ) is Order and low_s <= order.window_start < high_s:
                    counted[message.partition()].append(order)
            for partition, found in counted.items():
                windows[partition].add_all(found)
    rebuilt = sorted({key for w in windows.values() for key in w.aggregates})
    records = [
        (partial_key_bytes((*key, p)), codec.encode(Partial(*key, p, aggregate.count, aggregate.total)))
        for key in rebuilt for p in partitions
        for aggregate in [windows[p].aggregates.get(key) or Aggregate()]
    ]
    transactions(kafka, REPLAY).run(lambda producer: produce_all(producer, settings.METRICS, records))
    log.info("replay [%s, %s): %d records read, %d windows republished", start, end, read, len(rebuilt))
    return ReplayResult(
        range=(start.isoformat(), end.isoformat()), read=read, skipped_rejected=len(rejected),
        windows=len(rebuilt),
        order_count=sum(a.count for w in windows.values() for a in w.aggregates.values()),
    )


def _analyzed_upto(kafka: Kafka, allow_partial: bool) -> dict[int, int]:
    """Per partition of processed-orders, the offset analyze has committed up to. Refuses, unless
    ``allow_partial``, when retention has deleted the topic's first records."""
    with closing(kafka.consumer(ANALYZE.group)) as analyzed:
        count = partition_count(kafka.admin(), settings.PROCESSED)
        partitions = [TopicPartition(settings.PROCESSED, p) for p in range(count)]
        committed = retrying(analyzed.committed, partitions, timeout=TIMEOUT)
        starts = [retrying(analyzed.get_watermark_offsets, tp, timeout=TIMEOUT)[0] for tp in partitions]
    trimmed = {tp.partition: start for tp, start in zip(partitions, starts)}
    if any(trimmed.values()) and not allow_partial:
        raise RuntimeError(
            f"{settings.PROCESSED} no longer holds its first records (log start offsets {trimmed}): a replay "
            "would rebuild windows from part of their orders. Pass allow_partial=true to replay what is "
            "retained anyway."
        )
    return {tp.partition: max(tp.offset, 0) for tp in committed}


def _rejected_by_analyze(kafka: Kafka) -> set[tuple[int, int]]:
    """The (partition, offset) of each processed-orders record analyze dead-lettered."""
    rejected = set()
    with closing(kafka.consumer(topology.group("replay-reader"))) as consumer:
        dead = BoundedRead(
            consumer, settings.DLQ, admin=kafka.admin(), from_beginning=True, stop=shutdown.reason,
        )
        for batch in dead:
            for message in batch:
                letter = dead_letters.read(message)
                if letter.source_topic == settings.PROCESSED:
                    rejected.add((letter.source_partition, letter.source_offset))
    return rejected
