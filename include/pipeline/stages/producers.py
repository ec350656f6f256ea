"""A stage's Kafka producers: transactional, one per stage (or split of one), fencing the
attempts before it."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from confluent_kafka import Producer

from include.pipeline.domain.assignment import Assignment
from include.pipeline.kafka_io import access
from include.pipeline.kafka_io.client import TIMEOUT, Kafka
from include.pipeline.kafka_io.errors import retrying
from include.pipeline.kafka_io.writing import Transactions
from include.pipeline.topology import Stage

log = logging.getLogger(__name__)



def transactional_producer(
    kafka: Kafka, transactional_id: str, follow: bool = False,
) -> Producer:
    """A producer of ``transactional_id``, its transactions initialised (fencing an earlier one)."""
    producer = kafka.producer(transactional_id=transactional_id, follow=follow)
    # librdkafka looks for the transaction coordinator among the brokers it is connected to, and
    # asked before its first connection is up tries again only 500 ms later: a metadata request
    # connects it first (init_transactions 0.5 s -> 0.06 s, for each fenced id too). Safe since
    # a bounded read ends at the high watermark (kafka_io.reading.BoundedRead), not at the last
    # stable offset that a faster start could take before the upstream's commit markers.
    retrying(producer.list_topics, timeout=TIMEOUT)
    retrying(access.init_transactions, kafka, producer)  # a broker may be coming back (Transactions)
    return producer


def transactions(
    kafka: Kafka, stage: Stage, follow: bool = False, transactional_id: str | None = None,
) -> Transactions:
    """The stage's unit of work, on producers of its transactional id (or ``transactional_id``)."""
    txn_id = transactional_id or stage.transactional_id
    return Transactions(lambda: transactional_producer(kafka, txn_id, follow), stage.name)


def fence(kafka: Kafka, stage: Stage, instances: list[Assignment]) -> None:
    """Fence the transactional ids of ``instances`` (registering one aborts what its producer
    left open and stops it committing): they share a partition with the instance about to read."""
    if not instances:
        return
    ids = [instance.transactional_id(stage.group) for instance in instances]
    with ThreadPoolExecutor(min(8, len(ids))) as pool:  # a round trip each: at once
        list(pool.map(lambda txn_id: transactional_producer(kafka, txn_id), ids))
    log.info("%s: fenced the %d other splits' transactional ids that share its partitions",
             stage.name, len(ids))
