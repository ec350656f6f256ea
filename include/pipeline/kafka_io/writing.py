"""Writing to Kafka: producing records, and committing a batch's records and input offsets in one
transaction (``Transactions``, a stage's unit of work), one batch behind the reading (``Behind``)."""

from __future__ import annotations

import logging
import math
import os
import queue
import random
import threading
import time
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from operator import itemgetter
from typing import Callable, Iterator, NamedTuple, Protocol, Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

# Constants read through their modules, so that a test can shorten them in one place.
from include.pipeline.kafka_io import admin, client, errors
from include.pipeline.kafka_io.errors import OUTAGE, UNREACHABLE, retrying
from include.pipeline.metrics import counting

log = logging.getLogger(__name__)


def produce(
    producer: Producer, topic: str, key: bytes | None, value: bytes | None, headers=None, timestamp: int = 0,
    partition: int = -1, on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
) -> None:
    """produce(), waiting for room when the local queue is full instead of failing. A
    ``timestamp`` (epoch ms) carries an input record's time on; 0 is now. ``partition`` -1: the
    partitioner's choice, by key."""
    while True:
        try:
            producer.produce(
                topic, value, key, headers=headers, timestamp=timestamp, partition=partition,
                on_delivery=on_delivery,
            )
            return
        except BufferError:
            producer.poll(0.05)


def produce_all(
    producer: Producer, topic: str, records: Sequence[tuple[bytes | None, bytes | None]],
    ends: WrittenEnds | None = None,
) -> None:
    """produce() each (key, value), with the client's method called directly on the hot path;
    with ``ends``, where they end on each partition is kept there."""
    marks = NO_MARKS if ends is None else ends.marks(producer, topic, records, itemgetter(0))
    send = producer.produce
    for run, index in runs(records, marks):
        for key, value in run:
            try:
                send(topic, value, key)
            except BufferError:
                produce(producer, topic, key, value)
        if index is not None:
            key, value = records[index]
            produce(producer, topic, key, value, None, 0, marks.placed[index], ends.report(marks, index))


class Marks(NamedTuple):
    """The records of a batch that the stage places itself, index -> partition: the last record
    of each partition the batch writes to (``last``), and any record without a key after the
    earliest of those (the client's partitioner would put it anywhere)."""

    placed: dict[int, int]
    last: frozenset[int]


NO_MARKS = Marks({}, frozenset())


def marks_of(records: Sequence, key: Callable[..., bytes | None], partitions: int) -> Marks:
    """The marks of ``records`` over ``partitions``, found from the end, each record placed as the
    client's partitioner (consistent_random) places it: by the CRC-32 of its key, and a record
    without a key anywhere. A batch over fewer partitions than the topic has is read whole (a
    stage that keeps its input's keys writes a batch to the few partitions it read)."""
    crc32, randrange = zlib.crc32, random.randrange
    last: dict[int, int] = {}
    placed: dict[int, int] = {}
    index = len(records)
    while index and len(last) < partitions:
        index -= 1
        k = key(records[index])
        if k:
            partition = crc32(k) % partitions
            if partition not in last:
                last[partition] = index
                placed[index] = partition
        else:
            partition = placed[index] = randrange(partitions)
            last.setdefault(partition, index)
    return Marks(placed, frozenset(last.values()))


def runs(records: Sequence, marks: Marks) -> Iterator[tuple[Sequence, int | None]]:
    """``records`` cut at the marked ones: each run of records the partitioner places, then the
    index of the marked record after it (None after the last run)."""
    start = 0
    for index in sorted(marks.placed):
        yield records[start:index], index
        start = index + 1
    yield records[start:], None


class WrittenEnds:
    """Where a transactional producer's records end: per (topic, partition), the offset after
    the last record of a committed transaction (``committed``), from the delivery reports.

    A report for every record would cost a Python call each, about a tenth of generate's rate;
    only the last record of each partition in a batch asks for one. To know which that is before
    producing, those records are placed here (``marks_of``), as the client's partitioner, pinned
    in the producer's settings, would place it."""

    def __init__(self) -> None:
        self.committed: dict[tuple[str, int], int] = {}
        self._delivered: dict[tuple[str, int], int] = {}  # the transaction in flight's
        self._partitions: dict[str, int] = {}

    def begin(self) -> None:
        """A transaction begins: what it delivers counts only once it commits."""
        self._delivered = {}

    def commit(self) -> None:
        """The transaction committed: its ends are written."""
        for key, offset in self._delivered.items():
            self.committed[key] = max(offset, self.committed.get(key, 0))

    def marks(self, producer: Producer, topic: str, records: Sequence, key: Callable) -> Marks:
        """The marks of ``records`` to ``topic`` (``key`` gives a record's key)."""
        return marks_of(records, key, self._count(producer, topic))

    def report(self, marks: Marks, index: int) -> Callable[[KafkaError | None, Message], None] | None:
        """What a marked record asks for its delivery: a report if it is its partition's last."""
        return self._delivery if index in marks.last else None

    def _delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            self._delivered[message.topic(), message.partition()] = message.offset() + 1

    def _count(self, producer: Producer, topic: str) -> int:
        if topic not in self._partitions:
            # An unknown topic has none: nothing is placed here, and its produce() fails as it would.
            self._partitions[topic] = len(admin.partitions(producer, topic, client.TIMEOUT))
        return self._partitions[topic]


class Source(Protocol):
    """What a transaction commits the read of (``reading.BoundedRead``)."""

    def positions(self) -> list[TopicPartition]:
        """The offsets to commit: after the last record read, per partition."""


class Transactions:
    """A stage's transactional producer, one transaction a batch (its unit of work): what
    ``send(producer)`` produces and, with a consumer, the positions its source has read up to
    commit together or not at all.

    Through a broker outage of up to OUTAGE_SECONDS a stage goes on by itself. A commit that
    Kafka cannot take yet is tried again. A transaction that cannot have committed (its offsets
    failed to go in, or Kafka says to abort it) is sent again, ``send`` called anew, on a new
    producer of the same transactional id: its registration fences the old producer and aborts
    what that left open. (After a failed send of offsets librdkafka cannot go on with the old
    one: a second send blocks for good and an abort is refused, confluentinc/librdkafka#5456.)
    A commit still in doubt once Kafka has had OUTAGE_SECONDS to answer is settled on a new
    producer too: its registration completes or aborts the transaction, and the group's committed
    offsets say which; only one that did not commit is sent again. Anything else aborts and
    raises, so the task fails and its retry continues from what was committed.

    ``ends`` keeps where the records that ``send`` produces through it end (``produce_all``):
    where a reader of this stage's output must read up to.

    :param make: builds a producer of the stage's transactional id, transactions initialised.
    :param stage: whose transactions they are, for the metrics (each try that commits or not counted).
    """

    def __init__(self, make: Callable[[], Producer], stage: str = "") -> None:
        self._make, self.stage = make, stage
        self.ends = WrittenEnds()
        self.producer, self._stuck = make(), False
        self._caller = _Caller()

    def written_upto(self) -> dict[str, dict[str, int]]:
        """The committed ends as a result keeps them: topic -> partition (a string, as in JSON) -> offset."""
        upto: dict[str, dict[str, int]] = {}
        for (topic, partition), offset in sorted(self.ends.committed.items()):
            upto.setdefault(topic, {})[str(partition)] = offset
        return upto

    def run(
        self, send: Callable[[Producer], None], consumer: Consumer | None = None,
        source: Source | None = None,
    ) -> None:
        """Commits, in one transaction, what ``send`` produces and the positions ``source`` has read up to."""
        give_up = time.monotonic() + errors.OUTAGE_SECONDS
        with deadline(errors.OUTAGE_SECONDS + 3 * client.TIMEOUT, "a transaction"):
            while not self._attempt(send, consumer, source, give_up):
                pass

    def _attempt(self, send, consumer: Consumer | None, source: Source | None, give_up: float) -> bool:
        """One try of the transaction: True once it has committed, False to send it again."""
        committed = False
        try:
            committed = self._try(send, consumer, source, give_up)
        finally:
            counting.transaction(self.stage, committed)
        return committed

    def _try(self, send, consumer: Consumer | None, source: Source | None, give_up: float) -> bool:
        producer = self.producer
        producer.begin_transaction()
        self.ends.begin()
        committing = False
        try:
            send(producer)
            if consumer is not None and source is not None:
                positions, group = source.positions(), consumer.consumer_group_metadata()
                bound = client.TIMEOUT + errors.OUTAGE_NOTICE_SECONDS
                self._waiting(
                    producer.send_offsets_to_transaction, positions, group, client.TIMEOUT, bound=bound
                )
            committing = True
            self._waiting(retrying, producer.commit_transaction, client.TIMEOUT)  # serves the deliveries
            self.ends.commit()
            return True
        except KafkaException as exc:
            error = exc.args[0]
            if (not committing or error.txn_requires_abort()) and self._renewed(error, give_up):
                return False
            if committing and source is not None and error.retriable() and not error.fatal():
                # A commit that may or may not have gone through: the new producer's registration
                # settles it (the coordinator completes or aborts it), the group's offsets say which.
                self._renewed(error, math.inf, purge=False)  # the old one's commit is pending
                if done := self._committed(consumer, source):
                    self.ends.commit()
                return done
            self._abort()
            raise
        except BaseException:
            self._abort()
            raise

    def _waiting(self, call: Callable, *args, bound: float | None = None):
        """``call(*args)`` on a thread of its own (``_Caller``), so that the stage says at once
        when Kafka does not answer (a client's own errors arrive only once its call returns), and,
        with ``bound``, gives the call up as timed out after that many seconds: librdkafka's send
        of offsets can block past its timeout, for good, once the group coordinator has restarted
        (confluentinc/librdkafka#5456, #5511). The thread is then left to it, and neither it nor
        the producer is used again."""
        outcome, finished = self._caller.call(call, *args)
        if not finished.wait(errors.OUTAGE_NOTICE_SECONDS):
            OUTAGE.began(f"a transaction call has waited {errors.OUTAGE_NOTICE_SECONDS:.0f}s")
            finished.wait(None if bound is None else bound - errors.OUTAGE_NOTICE_SECONDS)
        if not outcome:
            self._stuck, self._caller = True, _Caller()
            error = KafkaError(KafkaError._TIMED_OUT, f"no answer within {bound:.0f}s", retriable=True)
            raise KafkaException(error)
        done, value = outcome[0]
        if not done:
            raise value
        return value

    @staticmethod
    def _committed(consumer: Consumer, source: Source) -> bool:
        """Whether the group's committed offsets are the batch's: its transaction committed."""
        positions = source.positions()
        batch_ends = {tp.partition: tp.offset for tp in positions}
        committed = retrying(consumer.committed, positions, timeout=client.TIMEOUT)
        done = all(batch_ends[tp.partition] == tp.offset for tp in committed)
        log.info(
            "the transaction in doubt has %s", "committed" if done else "not committed: sending it again"
        )
        return done

    def _renewed(self, error: KafkaError, give_up: float, purge: bool = True) -> bool:
        """A new producer in place of one whose open transaction cannot commit, if the error may
        pass (a fatal one, such as being fenced by another attempt of the stage, does not)."""
        may_pass = error.retriable() or error.txn_requires_abort()
        if error.fatal() or not may_pass or time.monotonic() > give_up:
            return False
        if error.code() in UNREACHABLE and not self._stuck:  # stuck, the client is at fault, not Kafka
            OUTAGE.began(error.str())
        log.info("the transaction did not go through (%s): sending it again on a new producer", error.str())
        if purge and not self._stuck:  # a stuck one is busy in its call's thread: left as it is
            self.producer.purge()
        self.producer, self._stuck = self._make(), False
        return True

    def _abort(self) -> None:
        if self._stuck:
            return
        try:
            self.producer.abort_transaction(client.TIMEOUT)
        except KafkaException as exc:  # a fenced or fatal producer cannot abort; the raise after it matters
            log.warning("aborting the transaction failed too: %s", exc)


class _Caller:
    """A daemon thread that makes the calls handed to it, one at a time: a thread started for
    each call cost a few ms a transaction once the GIL is busy (the next batch being read)."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="kafka-transaction-call", daemon=True).start()

    def call(self, call: Callable, *args) -> tuple[list, threading.Event]:
        """Hands ``call(*args)`` over; its outcome, (True, value) or (False, exception), comes in
        the list once the event is set."""
        outcome: list = []
        finished = threading.Event()
        self._calls.put((call, args, outcome, finished))
        return outcome, finished

    def _serve(self) -> None:
        while True:
            call, args, outcome, finished = self._calls.get()
            try:
                outcome.append((True, call(*args)))
            except BaseException as exc:
                outcome.append((False, exc))
            finished.set()


class Behind:
    """A bounded read's transactions one batch behind its reading: while a batch's transaction
    commits on a thread of its own (its calls mostly wait on the broker), the next batch is read
    and stepped. They still commit one at a time and in order, each with the positions its batch
    was read up to; one that fails raises from the next ``commit`` or from leaving, and nothing
    after it is sent. ``at_once`` (following): each commits before ``commit`` returns, so that
    a batch is reported at its commit (continuous mode's supervisor waits on the report).

    :param txns: the stage's unit of work.
    :param consumer: the consumer whose group's offsets each transaction commits.
    """

    def __init__(self, txns: Transactions, consumer: Consumer, at_once: bool = False) -> None:
        self.txns, self.consumer, self.at_once = txns, consumer, at_once
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="kafka-transactions")
        self._pending: tuple[Future, Callable[[float], None]] | None = None

    def commit(self, send: Callable[[Producer], None], source: Source, done: Callable[[float], None]) -> None:
        """Once the transaction before has committed, commit what ``send`` produces and the
        positions ``source`` has read up to now; then ``done(when)`` (here, with the monotonic
        time of the commit)."""
        upto = _Upto(source.positions())
        self.wait()
        if self.at_once:
            done(self._run(send, upto))
        else:
            self._pending = self._pool.submit(self._run, send, upto), done

    def _run(self, send: Callable[[Producer], None], upto: Source) -> float:
        self.txns.run(send, self.consumer, upto)
        return time.monotonic()

    def wait(self) -> None:
        """Until the transaction in flight, if any, has committed (or raise why it did not)."""
        if self._pending is not None:
            (future, done), self._pending = self._pending, None
            done(future.result())

    def __enter__(self) -> Behind:
        return self

    def __exit__(self, error_type, *_) -> None:
        try:
            if error_type is None:
                self.wait()
        finally:
            self._pool.shutdown(wait=True)


class _Upto:
    """The positions a batch was read up to, as its transaction commits them."""

    def __init__(self, positions: list[TopicPartition]) -> None:
        self._positions = positions

    def positions(self) -> list[TopicPartition]:
        """The offsets to commit with the batch, per partition."""
        return self._positions


@contextmanager
def deadline(seconds: float, what: str):
    """Exit the process if the block is still running after ``seconds``.

    The last guard against a Kafka client call that blocks past its own timeout (as librdkafka's
    send_offsets_to_transaction can, confluentinc/librdkafka#5456): a blocked C call cannot be
    interrupted, so the process ends instead. The task fails, Airflow retries it, and the
    retry's producer fences this one and aborts its open transaction.
    """
    token = object()
    _WATCHDOG.watch(token, seconds, what)
    try:
        yield
    finally:
        _WATCHDOG.done(token)


class _Watchdog:
    """The blocks ``deadline`` watches, looked at every second by one daemon thread (a timer
    thread started for each cost a few ms a transaction once the GIL is busy)."""

    def __init__(self) -> None:
        self._due: dict[object, tuple[float, str, float]] = {}  # token -> (due, what, seconds)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, token: object, seconds: float, what: str) -> None:
        with self._lock:
            self._due[token] = (time.monotonic() + seconds, what, seconds)
            if self._thread is None or not self._thread.is_alive():  # not yet, or a forked process
                self._thread = threading.Thread(target=self._look, name="kafka-deadline", daemon=True)
                self._thread.start()

    def done(self, token: object) -> None:
        with self._lock:
            del self._due[token]

    def _look(self) -> None:
        while True:
            time.sleep(1)
            now = time.monotonic()
            with self._lock:
                overdue = [(what, seconds) for due, what, seconds in self._due.values() if due < now]
            for what, seconds in overdue[:1]:
                log.critical(
                    "%s did not finish within %.0fs (the Kafka client is stuck); exiting so the task is "
                    "retried", what, seconds,
                )
                logging.shutdown()
                os._exit(70)


_WATCHDOG = _Watchdog()
