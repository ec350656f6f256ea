"""analyze's state in the analyze-state changelog: restored per partition of processed-orders,
written with each batch, and migrated once from the version before partitions."""

from __future__ import annotations

import logging
from contextlib import closing
from typing import Callable

from confluent_kafka import Producer, TopicPartition

from include.pipeline import settings, topology
from include.pipeline.domain import (
    state_codec,
)
from include.pipeline.domain.analyzer import Analyzer
from include.pipeline.domain.windows import (
    LEGACY,
    Ledger,
)
from include.pipeline.kafka_io.admin import partition_count
from include.pipeline.kafka_io.client import TIMEOUT, Kafka
from include.pipeline.kafka_io.errors import retrying
from include.pipeline.kafka_io.reading import BoundedRead
from include.pipeline.kafka_io.writing import produce
from include.pipeline.stages import shutdown
from include.pipeline.stages.producers import transactions
from include.pipeline.topology import ANALYZE

log = logging.getLogger(__name__)

RESTORE_BATCH = 16

# Its committed offsets say analyze-state no longer holds state of the version before partitions.
MIGRATED = topology.group("analyze-state-migrated")


def counted(analyzers: dict[int, Analyzer]) -> Ledger:
    """The partitions' ledgers as one."""
    total = Ledger()
    for analyzer in analyzers.values():
        total = total.plus(analyzer.ledger)
    return total


def send_state(producer: Producer, records: list[tuple[bytes, bytes | None]], changelog: int) -> None:
    """State records to the changelog partition of the processed-orders partition they belong to."""
    for key, value in records:
        partition, _ = state_codec.scope_of(key)
        where = -1 if partition is None else state_codec.changelog_partition(partition, changelog)
        produce(producer, settings.ANALYZE_STATE, key, value, partition=where)


def restore_analyzers(
    kafka: Kafka, partitions: list[int], make: Callable[[], Analyzer],
) -> dict[int, Analyzer]:
    """An analyzer per partition of processed-orders in ``partitions``, with the state the
    analyze-state changelog holds for it (read from the changelog partitions that hold theirs)."""
    analyzers = {partition: make() for partition in partitions}
    admin = kafka.admin()
    changelog = partition_count(admin, settings.ANALYZE_STATE)
    read = sorted({state_codec.changelog_partition(p, changelog) for p in partitions})
    # Reads from the start and never commits: the group id is only a name here. Two passes (see
    # Analyzer.restore), in small batches: a segment of order ids is a large record.
    with closing(kafka.consumer(topology.group("analyze-state-reader"))) as consumer:
        first = BoundedRead(
            consumer, settings.ANALYZE_STATE, admin=admin, from_beginning=True, batch_size=RESTORE_BATCH,
            partitions=read, stop=shutdown.reason,
        )
        legacy: set[bytes] = set()
        for batch in first:
            for message in batch:
                partition, key = state_codec.scope_of(message.key())
                if partition is None:
                    (legacy.add if message.value() is not None else legacy.discard)(key)
                elif partition in analyzers:
                    analyzers[partition].restore(key, message.value())
        if legacy:
            raise ValueError(
                f"{settings.ANALYZE_STATE} holds state of the version before partitions (keys such as "
                f"{min(legacy)[:40]!r}): run the create_topics task first, which migrates it"
            )
        upto = {partition: end for partition, (_, end) in first.ranges.items()}
        again = BoundedRead(
            consumer, settings.ANALYZE_STATE, admin=admin, from_beginning=True, upto=upto,
            batch_size=RESTORE_BATCH, partitions=read, stop=shutdown.reason,
        )
        for batch in again:
            for message in batch:
                partition, key = state_codec.scope_of(message.key())
                if partition in analyzers:
                    analyzers[partition].restore_ids(key, message.value())
    shutdown.check()  # half the state is no state: stop before counting anything against it
    log.info(
        "analyze state of %d partitions: %d open (window, product) aggregates, %d order ids remembered, "
        "%d counted so far", len(analyzers), sum(len(a.windows.aggregates) for a in analyzers.values()),
        sum(len(a.seen) for a in analyzers.values()), counted(analyzers).count,
    )
    return analyzers


def migrate_state(kafka: Kafka) -> None:
    """Give the analyze state of the version before partitions (keys without a partition) to each
    partition of processed-orders, in one transaction of analyze's (whose registration fences a
    zombie analyze first): its stream time and the order ids it counted to every partition; its
    windows and ledger are dropped, as the metrics they made stay in the store as its ``LEGACY``
    partials. The same transaction commits the offsets it read up to in the group
    ``MIGRATED``, so the changelog is read for this only until it has been migrated once (or
    found to need nothing)."""
    with closing(kafka.consumer(MIGRATED)) as consumer:
        admin = kafka.admin()
        changelog = partition_count(admin, settings.ANALYZE_STATE)
        tps = [TopicPartition(settings.ANALYZE_STATE, p) for p in range(changelog)]
        if any(tp.offset >= 0 for tp in retrying(consumer.committed, tps, timeout=TIMEOUT)):
            return
        txns = transactions(kafka, ANALYZE)  # registered before reading: what a zombie left is settled
        live: dict[bytes, bytes | None] = {}
        state = BoundedRead(
            consumer, settings.ANALYZE_STATE, admin=admin, from_beginning=True, batch_size=RESTORE_BATCH,
            stop=shutdown.reason,
        )
        for batch in state:
            for message in batch:
                if state_codec.scope_of(message.key())[0] is None:
                    live[message.key()] = message.value()
        if not state.positions():
            return  # an empty changelog: nothing to migrate, nothing to mark yet
        live = {key: value for key, value in live.items() if value is not None}
        partitions = partition_count(admin, settings.PROCESSED)
        carried = [
            (key, value) for key, value in live.items()
            if state_codec.is_segment(key)
            or isinstance(state_codec.decode(key, value), state_codec.Watermark)
        ]
        records = [record for p in range(partitions) for record in state_codec.scoped(p, carried)]
        records += [(key, None) for key in live]
        txns.run(lambda producer: send_state(producer, records, changelog), consumer, state)
    if live:
        log.warning(
            "migrated the analyze state of the version before partitions to %d partitions: %d segments of "
            "order ids and the watermark copied to each, %d windows and the ledger left to the store "
            "(their metrics are its partials of partition %d)", partitions,
            sum(map(state_codec.is_segment, live)), sum(key.startswith(b"window:") for key in live), LEGACY,
        )
