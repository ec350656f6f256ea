"""The pipeline's topics: creating those that are missing, and their offsets."""

from __future__ import annotations

from confluent_kafka import Consumer, IsolationLevel, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from include.pipeline import settings
from include.pipeline.kafka_io.client import TIMEOUT
from include.pipeline.kafka_io.errors import retrying


def create_topics(admin: AdminClient, partitions: int) -> tuple[list[str], list[str]]:
    """Create the pipeline's topics that do not exist yet, each replicated on up to 3 brokers
    (with 3, a write needs 2 in sync: one broker may fail); returns the names created and the
    names the principal may not create."""
    metadata = admin.list_topics(timeout=TIMEOUT)
    replication = min(3, len(metadata.brokers))
    durability = {"min.insync.replicas": str(replication - 1)} if replication == 3 else {}
    missing = [
        NewTopic(
            name, num_partitions=partitions, replication_factor=replication, config={**durability, **config}
        )
        for name, config in settings.TOPIC_CONFIGS.items()
        if name not in metadata.topics
    ]
    if not missing:
        return [], []
    created, denied = [], []
    for name, future in admin.create_topics(missing, request_timeout=TIMEOUT).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            code = exc.args[0].code()
            if code in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED):
                denied.append(name)
            elif code != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return sorted(created), sorted(denied)


def partition_count(admin: AdminClient, topic: str) -> int:
    """How many partitions ``topic`` has."""
    return len(partitions(admin, topic, required=True))


def partitions(
    client: AdminClient | Consumer | Producer, topic: str, timeout: float = TIMEOUT, *,
    required: bool = False, retry: bool = True,
) -> list[int]:
    """The partitions of ``topic``, from any client's metadata; a topic that does not exist has
    none, or is an error naming the fix if ``required``. ``retry``: through an outage, as
    ``errors.retrying`` waits; without, a probe that fails at once."""
    look = client.list_topics
    listed = retrying(look, topic, timeout=timeout) if retry else look(topic, timeout=timeout)
    metadata = listed.topics.get(topic)
    if metadata is None or metadata.error is not None:
        if required:
            raise RuntimeError(f"topic {topic!r} does not exist: run the create_topics task first")
        return []
    return sorted(metadata.partitions)


def offset_range(consumer: Consumer, topic: str) -> dict[int, tuple[int, int]]:
    """Per partition of ``topic``: (log start offset, end offset as the consumer sees it: for a
    read_committed one, the last stable offset)."""
    return {
        p: retrying(consumer.get_watermark_offsets, TopicPartition(topic, p), timeout=TIMEOUT)
        for p in partitions(consumer, topic, required=True)
    }


def written_range(
    admin: AdminClient, topic: str, only: list[int] | None = None,
) -> dict[int, tuple[int, int]]:
    """Per partition of ``topic`` (or of those ``only``): (log start offset, high watermark). The
    high watermark is past every record written, committed or not: unlike the last stable
    offset, it already counts a transaction whose commit has returned but whose commit markers
    are not written yet (the coordinator writes them after it answers, KAFKA-10167)."""
    # The metadata first, always: a new client's ListOffsets sent before it knows the leaders
    # waits for them with librdkafka's backoff (0.5 to 3 s measured; 5 ms after the metadata).
    every = partitions(admin, topic, required=True)
    tps = [TopicPartition(topic, p) for p in (every if only is None else only)]
    starts = retrying(_list_offsets, admin, tps, OffsetSpec.earliest())
    ends = retrying(_list_offsets, admin, tps, OffsetSpec.latest())
    return {tp.partition: (starts[tp.partition], ends[tp.partition]) for tp in tps}


def _list_offsets(admin: AdminClient, tps: list[TopicPartition], spec: OffsetSpec) -> dict[int, int]:
    futures = admin.list_offsets(
        dict.fromkeys(tps, spec), isolation_level=IsolationLevel.READ_UNCOMMITTED, request_timeout=TIMEOUT,
    )
    return {tp.partition: future.result().offset for tp, future in futures.items()}
