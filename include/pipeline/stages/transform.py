"""The consume-transform-produce loop that process and analyze share."""

from __future__ import annotations

import logging
import time
from collections import Counter
from functools import partial
from operator import attrgetter
from typing import Callable

from confluent_kafka import Message, Producer

from include.pipeline import settings
from include.pipeline.domain import (
    dead_letters,
    steps,
)
from include.pipeline.domain.assignment import Assignment
from include.pipeline.kafka_io import access
from include.pipeline.kafka_io.admin import partition_count
from include.pipeline.kafka_io.client import Kafka
from include.pipeline.kafka_io.errors import OUTAGE
from include.pipeline.kafka_io.reading import BoundedRead, Follow
from include.pipeline.kafka_io.writing import Behind, WrittenEnds, produce, runs
from include.pipeline.metrics import counting
from include.pipeline.run.results import (
    InputRanges,
)
from include.pipeline.stages import shutdown
from include.pipeline.stages.producers import fence, transactions
from include.pipeline.stages.progress import Progress
from include.pipeline.stages.state import send_state
from include.pipeline.topology import Stage

log = logging.getLogger(__name__)



class TransformLoop:
    """The consume-transform-produce loop of process and analyze. On entering, the stage's
    transactions start: the fixed transactional id fences a zombie attempt of the same stage (a
    killed task's or process's producer) and aborts its open transaction before this attempt reads
    anything. ``run(step)`` then turns each batch of the input into outputs with the pure ``step``
    and commits them (records to the stage's output topic, dead letters, state changes) in one
    transaction with the batch's offsets.

    :param stage: the stage of the topology (its input, its first output, its ids).
    :param follow: continuous mode (``kafka_io.reading.Follow``); None: bounded.
    :param worker: the partitions of the input it owns (``assignment``), and so its
        transactional id; first it fences every other split's instance that shares one.
    """

    def __init__(
        self, kafka: Kafka, stage: Stage, follow: Follow | None = None, worker: Assignment = Assignment(),
    ) -> None:
        self.kafka, self.stage, self.follow, self.worker = kafka, stage, follow, worker
        self.reasons: Counter[str] = Counter()  # dead letters by reason
        self.written = 0  # records to the output topic
        share = "" if worker.workers == 1 else f" ({worker})"
        self.progress = Progress(f"{stage.name}{share} {stage.input} -> {stage.outputs[0]}")

    def __enter__(self) -> TransformLoop:
        counting.stage_started(self.stage.name, OUTAGE.seconds)
        access.ready(self.kafka, [self.stage.name])
        following = self.follow is not None
        self.admin = self.kafka.admin()
        count = partition_count(self.admin, self.stage.input)
        self.partitions = self.worker.partitions(count)
        keeps_state = settings.ANALYZE_STATE in self.stage.outputs
        self.changelog = partition_count(self.admin, settings.ANALYZE_STATE) if keeps_state else 0
        # Its own id first, then the rivals': of two rivals started at once, the later to fence
        # stops the other, whose own producer is registered by then, and reads the offsets after
        # it. Fenced the other way round, each fenced the other's id before that registered its
        # own, and both read and processed the same offsets (tests/integration/test_scale_out.py).
        txn_id = self.worker.transactional_id(self.stage.group)
        self.txns = transactions(self.kafka, self.stage, following, txn_id)
        fence(self.kafka, self.stage, self.worker.rivals(count))
        self.consumer = self.kafka.consumer(self.stage.group, follow=following)
        self.source = BoundedRead(
            self.consumer, self.stage.input, admin=self.admin, follow=self.follow, partitions=self.partitions,
            stop=shutdown.reason,
        )
        if self.worker.workers > 1:
            log.info("%s, %s: partitions %s of %s",
                     self.stage.name, self.worker, self.partitions, self.stage.input)
        return self

    def __exit__(self, error_type, *_) -> None:
        self.consumer.close()
        if error_type is None:
            self.progress.done()

    def run(
        self, step: Callable[[list[Message]], steps.Processed | steps.Analyzed],
        committed: Callable[[steps.Analyzed], None] | None = None,
    ) -> None:
        """Each batch of the input through ``step``, its outputs and offsets in one transaction,
        which commits while the next batch is read and stepped (``Behind``; following, at once);
        once it has, ``committed(out)``, with what ``step`` made of the batch, and the batch's
        metrics."""
        output = self.stage.outputs[0]
        started = time.monotonic()
        with Behind(self.txns, self.consumer, at_once=self.follow is not None) as transactions:
            for batch in self.source:
                out = step(batch)

                def send(producer: Producer, batch=batch, out=out) -> None:
                    _send(producer, output, out.records, self.txns.ends)
                    for r in out.rejected:
                        message = batch[r.index]
                        headers = dead_letters.headers(message, r.reason, r.detail)
                        produce(producer, settings.DLQ, message.key(), message.value(), headers)
                    send_state(producer, out.state, self.changelog)

                report = partial(self._committed, len(batch), out, started, self.source.behind(), committed)
                transactions.commit(send, self.source, report)
                started = time.monotonic()
        counting.lag(self.stage.name, self.stage.input, self.source.behind())  # a read with no batch too

    def _committed(
        self, read: int, out: steps.Processed | steps.Analyzed, started: float, behind: dict[int, int],
        committed: Callable[[steps.Analyzed], None] | None, at: float,
    ) -> None:
        """A batch of ``read`` records whose transaction committed ``at``: its counts and metrics
        (``behind``: the lag where it was read up to)."""
        name, topic = self.stage.name, self.stage.input
        rejected = Counter(rejection.reason for rejection in out.rejected)
        self.written += len(out.records)
        self.reasons.update(rejected)
        self.progress.add(read)
        counting.batch(name, at - started, (topic, read), (self.stage.outputs[0], len(out.records)), rejected)
        counting.lag(name, topic, behind)
        if committed is not None:
            committed(out)
        if self.follow is not None:
            self.follow.committed(name, read, len(out.records))

    @property
    def read(self) -> int:
        """Records read."""
        return self.progress.count

    @property
    def input(self) -> InputRanges:
        """The offsets read, per partition."""
        return ranges(self.stage.input, self.source)

    def written_to(self) -> dict[str, int]:
        """Records written per topic: the output topic's, and the dead letters."""
        return {self.stage.outputs[0]: self.written, settings.DLQ: sum(self.reasons.values())}


def _send(producer: Producer, topic: str, records: list[steps.Outgoing], ends: WrittenEnds) -> None:
    marks = ends.marks(producer, topic, records, attrgetter("key"))
    send = producer.produce  # called directly: the hot path of process
    for run, index in runs(records, marks):
        for r in run:
            try:
                # Positional (partition -1: the partitioner's, no callbacks): keywords cost the
                # client a third more a record.
                send(topic, r.value, r.key, -1, None, None, r.timestamp, r.headers)
            except BufferError:
                produce(producer, topic, r.key, r.value, r.headers, r.timestamp)
        if index is not None:
            r = records[index]
            report = ends.report(marks, index)
            produce(producer, topic, r.key, r.value, r.headers, r.timestamp, marks.placed[index], report)


def ranges(topic: str, source: BoundedRead) -> InputRanges:
    """The offsets ``source`` read of ``topic``, per partition, as a result keeps them."""
    partitions = {str(p): (first, following) for p, (first, following) in sorted(source.ranges.items())}
    held = {str(p): stopped_end for p, stopped_end in source.held.items()}
    return InputRanges(topic=topic, partitions=partitions, lost=source.lost, held=held)
