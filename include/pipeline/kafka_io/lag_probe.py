"""The offsets that consumer lag is made of (``include.pipeline.kafka_io.lag`` computes the lag)."""

from __future__ import annotations

from confluent_kafka import TopicPartition

from include.pipeline.kafka_io.admin import partitions
from include.pipeline.kafka_io.client import TIMEOUT, Kafka


class LagProbe:
    """The offsets that lag is made of, for topic -> consumer group pairs, keyed by (topic,
    partition): the last stable offsets (what read_committed readers see), the group's committed
    offsets where it has any, and the log start offsets. It only reads: each group's consumer is
    never assigned or subscribed, so it joins no group and commits nothing. A topic that does not
    exist yet has no partitions. A context manager: its consumers close on leaving."""

    def __init__(self, kafka: Kafka, groups: dict[str, str], quiet: bool = False) -> None:
        self.consumers = {topic: kafka.consumer(group, quiet=quiet) for topic, group in groups.items()}

    def offsets(self, timeout: float = TIMEOUT) -> tuple[dict, dict, dict]:
        """The last stable offsets, the groups' committed ones and the log start ones, in that order."""
        ends, committed, starts = {}, {}, {}
        for topic, consumer in self.consumers.items():
            tps = [TopicPartition(topic, p) for p in partitions(consumer, topic, timeout, retry=False)]
            for tp in tps:
                starts[topic, tp.partition], ends[topic, tp.partition] = consumer.get_watermark_offsets(
                    tp, timeout=timeout
                )
            committed.update({
                (topic, tp.partition): tp.offset
                for tp in consumer.committed(tps, timeout=timeout) if tp.offset >= 0
            })
        return ends, committed, starts

    def __enter__(self) -> LagProbe:
        return self

    def __exit__(self, *_) -> None:
        for consumer in self.consumers.values():
            consumer.close()
