"""The client baselines the stages are measured against: raw bytes through confluent-kafka with
the stages' settings, bounded read and transactions (one batch behind the reading, as theirs), no
parsing (consume only, and consume -> produce of the same bytes); and the stages' unit of work on
a producer of its own."""

from __future__ import annotations

from contextlib import closing

from include.pipeline import settings

COPY_TOPIC = "bench-copy"  # where the consume -> produce baseline writes
# Each stage's baseline (None: generate reads nothing; the sink reads a few thousand window
# partials whatever N, so its seconds are its fixed costs, not a rate to hold against one).
BASELINE_FOR = {"generate": None, "process": "consume_produce", "analyze": "consume", "sink": None}


def baseline(kafka, what: str) -> int:
    """``what`` (consume or consume_produce) over the orders topic; returns the records read."""
    from include.pipeline.kafka_io.reading import BoundedRead

    group = f"bench-{what}"
    if what == "consume_produce":
        return copy(kafka, settings.ORDERS, COPY_TOPIC, group)
    with closing(kafka.consumer(group)) as consumer:
        return sum(len(batch) for batch in BoundedRead(consumer, settings.ORDERS, admin=kafka.admin()))


def copy(kafka, source: str, target: str, group: str) -> int:
    """The records of ``source`` copied to ``target`` as the stages copy (a bounded read, each
    batch's records and offsets in one transaction), as consumer group ``group``; returns the
    records copied."""
    from include.pipeline.kafka_io.reading import BoundedRead
    from include.pipeline.kafka_io.writing import Behind, produce_all

    txns = transactions(kafka, group)
    count = 0
    with closing(kafka.consumer(group)) as consumer:
        read = BoundedRead(consumer, source, admin=kafka.admin())
        with Behind(txns, consumer) as behind:  # one batch behind the reading, as the stages commit
            for batch in read:

                def send(producer, batch=batch) -> None:
                    records = [(message.key(), message.value()) for message in batch]
                    produce_all(producer, target, records, txns.ends)

                behind.commit(send, read, lambda _: None)
                count += len(batch)
    return count


def transactions(kafka, transactional_id: str):
    """The stages' unit of work (kafka_io.Transactions) on a producer of its own, made as theirs are."""
    from include.pipeline.kafka_io.writing import Transactions
    from include.pipeline.stages.producers import transactional_producer

    return Transactions(lambda: transactional_producer(kafka, transactional_id))
