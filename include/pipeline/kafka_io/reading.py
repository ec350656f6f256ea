"""A stage's input: the committed records of a topic in batches, bounded (the Airflow tasks) or
following the topic (continuous mode)."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from include.pipeline import shutdown
from include.pipeline.kafka_io.admin import offset_range
from include.pipeline.kafka_io.client import TIMEOUT
from include.pipeline.kafka_io.errors import OUTAGE, retrying

log = logging.getLogger(__name__)

BATCH_SIZE = 10_000


def _never() -> bool:
    return False


@dataclass
class Follow:
    """Continuous mode for a stage: its read follows the topic instead of ending at the end
    offsets it saw at the start.

    :param interval: seconds a batch may collect records before its transaction commits
        (``commit_interval_ms`` / 1000); a full batch commits at once.
    :param finish: asked between batches; True makes the read bounded at the end offsets of that
        moment, so the stage ends once it has read everything committed before (the hand-over of
        one stream run to the next, once the stage upstream has finished).
    :param report: called after each committed batch with the stage's name, the records it read
        and wrote, and the end-to-end latencies it measured (the caller builds its report).
    :param measure_since: epoch seconds: the latencies of orders produced before are left out (a
        warm-up's, whose wait is the start-up's).
    """

    interval: float = 0.1
    finish: Callable[[], bool] = _never
    report: Callable[[str, int, int, Any], None] | None = None
    measure_since: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.interval <= 60:
            raise ValueError(f"commit_interval_ms must be between 1 and 60000, got {self.interval * 1000:g}")

    def committed(self, stage: str, read: int, written: int, latencies: Any = None) -> None:
        """Report a committed batch (``latencies``: the sink's, whatever its caller measures them in)."""
        if self.report is not None:
            self.report(stage, read, written, latencies)


class BoundedRead:
    """Batches of the committed records of ``topic`` after the group's committed offsets (or
    from the start, or from ``starts``, offsets its caller keeps itself, per partition), up to
    the end offsets seen when iteration starts (or ``upto``); with ``follow``, on past them up to
    the end offsets seen when ``follow.finish()`` first says True. Only ``partitions`` of the
    topic, if given (a worker's share, ``assignment``). A stop requested
    (``shutdown``) ends it between two batches, bounded or following.

    Afterwards ``ranges`` holds, per partition, [first offset, offset after the last record
    read], and ``lost`` counts offsets that retention deleted before this group read them.
    Iteration ends early, with a warning, if nothing arrives for ``idle_timeout`` seconds (an
    upstream transaction left open holds read_committed readers back until the broker aborts it).
    """

    def __init__(
        self, consumer: Consumer, topic: str, *, from_beginning: bool = False,
        starts: dict[int, int] | None = None, upto: dict[int, int] | None = None,
        batch_size: int = BATCH_SIZE, idle_timeout: float = TIMEOUT, follow: Follow | None = None,
        partitions: list[int] | None = None,
    ) -> None:
        self.consumer, self.topic, self.from_beginning, self.upto = consumer, topic, from_beginning, upto
        self.partitions = partitions
        self.starts, self.follow = starts, follow
        self.batch_size, self.idle_timeout = batch_size, idle_timeout
        self.ranges: dict[int, list[int]] = {}
        self.next: dict[int, int] = {}
        self.lost = 0

    def _bounds(self) -> tuple[dict[int, int], dict[int, int]]:
        consumer, topic = self.consumer, self.topic
        watermarks = offset_range(consumer, topic)
        if self.partitions is not None:
            watermarks = {p: watermarks[p] for p in self.partitions}
        partitions = [TopicPartition(topic, p) for p in watermarks]
        starts = {p: low for p, (low, _) in watermarks.items()}
        if self.starts is not None:
            read_from = self.starts
        elif self.from_beginning:
            read_from = {}
        else:
            read_from = {
                tp.partition: tp.offset for tp in retrying(consumer.committed, partitions, timeout=TIMEOUT)
            }
        for partition, offset in read_from.items():
            if offset >= 0 and partition in starts:
                low = watermarks[partition][0]
                if offset < low:
                    log.error(
                        "%s[%d]: offsets %d..%d were deleted before they were read",
                        topic, partition, offset, low - 1,
                    )
                    self.lost += low - offset
                starts[partition] = max(offset, low)
        ends = {p: high for p, (_, high) in watermarks.items()}
        if self.upto is not None:
            ends = {p: min(high, self.upto.get(p, 0)) for p, high in ends.items()}
        return starts, ends

    def __iter__(self) -> Iterator[list[Message]]:
        starts, ends = self._bounds()
        follow = self.follow
        following_on = follow is not None  # the ends are open until follow.finish()
        if following_on:
            ends = dict.fromkeys(starts, math.inf)
        self.ranges = {p: [starts[p], starts[p]] for p in starts}
        # Where the group continues from: past the records read and past the transaction markers
        # after them (a marker is no record; left uncommitted it would look like lag forever).
        self.next = dict(starts)
        pending = {p for p in starts if starts[p] < ends[p]}
        if not pending:
            return
        consumer, following = self.consumer, self.next
        consumer.assign([TopicPartition(self.topic, p, starts[p]) for p in sorted(pending)])
        last_progress = time.monotonic()
        while pending:
            if shutdown.requested():
                log.warning("%s: stopped reading at %s (%s)", self.topic, self.next, shutdown.reason())
                return
            if following_on and follow.finish():
                following_on, last_progress = False, time.monotonic()
                ends = {p: high for p, (_, high) in offset_range(consumer, self.topic).items() if p in ends}
                pending = {p for p in pending if following[p] < ends[p]}
                continue
            batch, moved = self._collect(ends, pending, following_on)
            if moved:  # a batch, or only markers passed (an empty batch, so the stage commits them)
                last_progress = time.monotonic()
                OUTAGE.ended()
                yield batch
            elif not following_on and time.monotonic() - last_progress > self.idle_timeout:
                log.warning(
                    "%s: nothing new for %.0fs on partitions %s; ending early",
                    self.topic, self.idle_timeout, sorted(pending),
                )
                return

    def _collect(
        self, ends: dict[int, float], pending: set[int], following_on: bool,
    ) -> tuple[list[Message], bool]:
        """The next batch, and whether the read moved on (a batch, or transaction markers passed);
        a partition read up to its end leaves ``pending``."""
        consumer, ranges, following = self.consumer, self.ranges, self.next
        batch: list[Message] = []
        moved = False
        opened = time.monotonic()
        while pending and len(batch) < self.batch_size:
            # Following, a batch collects for one interval (consume() waits that long unless
            # the batch fills); an idle stage so blocks in consume() and never spins.
            wait = self.follow.interval - (time.monotonic() - opened) if following_on else 0.5
            if wait <= 0:
                break
            messages = consumer.consume(self.batch_size - len(batch), timeout=wait)
            if not messages:
                break
            for message in messages:
                partition, offset = message.partition(), message.offset()
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(error)
                    # The end for read_committed: the last stable offset, past the markers.
                    done = min(offset, ends[partition])
                elif offset < ends[partition]:
                    batch.append(message)
                    ranges[partition][1] = done = offset + 1
                else:  # a record from after the bound: everything below the bound was read
                    done = ends[partition]
                if done > following[partition]:
                    following[partition], moved = done, True
                if (error is not None and not following_on) or done >= ends[partition]:
                    pending.discard(partition)
        return batch, moved

    def positions(self) -> list[TopicPartition]:
        """The offsets to commit once the batches so far are done, per partition read from."""
        return [TopicPartition(self.topic, p, end) for p, end in self.next.items() if end > self.ranges[p][0]]
