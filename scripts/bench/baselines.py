"""The client baselines the stages are measured against: raw bytes through confluent-kafka with
the stages' settings, bounded read and transactions (one batch behind the reading, as theirs), no
parsing (consume only, and consume -> produce of the same bytes); and the stages' unit of work on
a producer of its own."""

from __future__ import annotations

from contextlib import closing

from include.pipeline import settings

COPY_TOPIC = "bench-copy"  # where the consume -> produce baseline writes
# Each stage's baseline (None: generate reads nothing).
BASELINE_FOR = {"generate": None, "process": "consume_produce", "analyze": "consume", "sink": "consume"}


def baseline(kafka, what: str) -> int:
    """``what`` (consume or consume_produce) over the orders topic; returns the records read."""
    from include.pipeline.kafka_io.reading import BoundedRead
    from include.pipeline.kafka_io.writing import Behind, produce_all

    group = f"bench-{what}"
    with closing(kafka.consumer(group)) as consumer:
        if what == "consume":
            return sum(len(batch) for batch in BoundedRead(consumer, settings.ORDERS, admin=kafka.admin()))
        txns = transactions(kafka, group)
        count = 0
        source = BoundedRead(consumer, settings.ORDERS, admin=kafka.admin())
        with Behind(txns, consumer) as behind:  # as the stages commit them
            for batch in source:

                def send(producer, batch=batch) -> None:
                    records = [(message.key(), message.value()) for message in batch]
                    produce_all(producer, COPY_TOPIC, records, txns.ends)

                behind.commit(send, source, lambda _: None)
                count += len(batch)
        return count


def transactions(kafka, transactional_id: str):
    """The stages' unit of work (kafka_io.Transactions) on a producer of its own, made as theirs are."""
    from include.pipeline.kafka_io.writing import Transactions
    from include.pipeline.stages.producers import transactional_producer

    return Transactions(lambda: transactional_producer(kafka, transactional_id))
