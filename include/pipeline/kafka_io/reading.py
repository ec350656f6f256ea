"""A stage's input: the committed records of a topic in batches, bounded (the Airflow tasks) or
following the topic (continuous mode)."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from include.pipeline import settings
from include.pipeline.kafka_io.admin import written_range
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
    the ends written when iteration starts (or ``upto``); with ``follow``, on past them up to
    the ends written when ``follow.finish()`` first says True. Only ``partitions`` of the topic,
    if given (a worker's share, ``assignment``). A stop requested (``stop``) ends it between
    two batches, bounded or following.

    An end is the high watermark, the read_uncommitted end (as Kafka Streams' restore and Flink's
    bounded source take it), not the last stable offset: a transaction whose commit has returned
    may not have its commit markers written yet, and the last stable offset stays below it until
    they are. A partition is read once the read_committed position (past aborted records and
    markers) reaches its end. So a read started right after an upstream commit reads all of it.
    A transaction of another writer still open holds a partition for at most
    ``settings.open_transaction_wait()`` seconds, about the time the broker takes to abort one
    (``transaction.timeout.ms``, 60 s, and its 10 s check); then the read ends, with one line
    saying so, and ``held`` keeps, per such partition, [where it stopped, its end].

    Afterwards ``ranges`` holds, per partition, [first offset, offset after the last record
    read], and ``lost`` counts offsets that retention deleted before this group read them.

    :param admin: where the ends come from (an admin client of the same cluster).
    :param stop: why the read must end now (a stage's ``shutdown.reason``); None to go on.
    """

    def __init__(
        self, consumer: Consumer, topic: str, *, admin: AdminClient, from_beginning: bool = False,
        starts: dict[int, int] | None = None, upto: dict[int, int] | None = None,
        batch_size: int = BATCH_SIZE, follow: Follow | None = None, partitions: list[int] | None = None,
        stop: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.consumer, self.admin, self.topic, self.from_beginning, self.upto = (
            consumer, admin, topic, from_beginning, upto
        )
        self.partitions = partitions
        self.starts, self.follow, self.stop = starts, follow, stop
        self.batch_size = batch_size
        self.ranges: dict[int, list[int]] = {}
        self.next: dict[int, int] = {}
        self.held: dict[int, tuple[int, int]] = {}
        self.lost = 0
        self.ends: dict[int, float] = {}  # where the read ends, per partition (inf: following on)

    def _bounds(self) -> tuple[dict[int, int], dict[int, int]]:
        consumer, topic = self.consumer, self.topic
        # Connects the consumer before it asks for its group's offsets: a request sent before its
        # first connection is up waits for librdkafka's retry backoff (up to a second measured).
        retrying(consumer.list_topics, topic, timeout=TIMEOUT)
        watermarks = written_range(self.admin, topic, self.partitions)
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
        return starts, self._ends(watermarks)

    def _ends(self, watermarks: dict[int, tuple[int, int]]) -> dict[int, int]:
        ends = {p: high for p, (_, high) in watermarks.items()}
        if self.upto is not None:
            ends = {p: min(high, self.upto.get(p, 0)) for p, high in ends.items()}
        return ends

    def __iter__(self) -> Iterator[list[Message]]:
        starts, ends = self._bounds()
        follow = self.follow
        following_on = follow is not None  # the ends are open until follow.finish()
        if following_on:
            ends = dict.fromkeys(starts, math.inf)
        self.ends = ends
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
            if (why := self.stop()) is not None:
                log.warning("%s: stopped reading at %s (%s)", self.topic, self.next, why)
                return
            if following_on and follow.finish():
                following_on, last_progress = False, time.monotonic()
                ends = self.ends = self._ends(written_range(self.admin, self.topic, sorted(ends)))
                pending = {p for p in pending if following[p] < ends[p]}
                continue
            batch, moved = self._collect(ends, pending, following_on)
            if moved:  # a batch, or only markers passed (an empty batch, so the stage commits them)
                last_progress = time.monotonic()
                OUTAGE.ended()
                yield batch
            elif not following_on and time.monotonic() - last_progress > settings.open_transaction_wait():
                self._give_up(ends, pending)
                return

    def _give_up(self, ends: dict[int, float], pending: set[int]) -> None:
        """End a read held by transactions still open (or by Kafka not answering): said once."""
        self.held = {p: (self.next[p], int(ends[p])) for p in sorted(pending)}
        log.warning(
            "%s: ending the read with partitions %s not read to their ends: nothing new for %.0fs, a "
            "transaction still open holds them (or Kafka does not answer); left for the next run: %s",
            self.topic, sorted(pending), settings.open_transaction_wait(),
            ", ".join(f"[{p}] offsets {start}..{end - 1}" for p, (start, end) in self.held.items()),
        )

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
                if partition not in pending:  # read to its end already: the rest is the next read's
                    continue
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(error)
                    # read_committed's end, the last stable offset: every committed record before
                    # it has come, so the offsets up to it are read or are markers and aborted ones.
                    done = offset
                elif offset < ends[partition]:
                    batch.append(message)
                    ranges[partition][1] = done = offset + 1
                else:  # the first record past the end: the offsets before it are read or markers
                    done = offset
                if done > following[partition]:
                    following[partition], moved = done, True
                if offset >= ends[partition]:  # a last record read (offset < end) waits for what follows it
                    pending.discard(partition)
        return batch, moved

    def behind(self) -> dict[int, int]:
        """Per partition read, the records between where the group continues from and the end:
        the bounded read's end, or, following, the newest end the consumer has fetched (cached
        by the client: no request). The consumer lag a stage reports after each batch."""
        behind = {}
        for partition, position in self.next.items():
            end = self.ends[partition]
            if end == math.inf:
                tp = TopicPartition(self.topic, partition)
                _, end = self.consumer.get_watermark_offsets(tp, cached=True)
                if end < 0:  # nothing fetched from it yet
                    continue
            behind[partition] = max(0, int(end) - position)
        return behind

    def positions(self) -> list[TopicPartition]:
        """The offsets to commit once the batches so far are done, per partition read from."""
        return [TopicPartition(self.topic, p, end) for p, end in self.next.items() if end > self.ranges[p][0]]
