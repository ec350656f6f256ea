"""Writing to Kafka: producing records, and committing a batch's records and input offsets in one
transaction (``Transactions``, a stage's unit of work)."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from contextlib import contextmanager
from typing import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

# Constants read through their modules, so that a test can shorten them in one place.
from include.pipeline.kafka_io import client, errors
from include.pipeline.kafka_io.errors import OUTAGE, UNREACHABLE, retrying
from include.pipeline.kafka_io.reading import BoundedRead

log = logging.getLogger(__name__)


def produce(
    producer: Producer, topic: str, key: bytes | None, value: bytes | None, headers=None, timestamp: int = 0,
    partition: int = -1,
) -> None:
    """produce(), waiting for room when the local queue is full instead of failing. A
    ``timestamp`` (epoch ms) carries an input record's time on; 0 is now. ``partition`` -1: the
    partitioner's choice, by key."""
    while True:
        try:
            producer.produce(topic, value, key, headers=headers, timestamp=timestamp, partition=partition)
            return
        except BufferError:
            producer.poll(0.05)


def produce_all(producer: Producer, topic: str, records: list[tuple[bytes | None, bytes | None]]) -> None:
    """produce() each (key, value), with the client's method called directly on the hot path."""
    send = producer.produce
    for key, value in records:
        try:
            send(topic, value, key)
        except BufferError:
            produce(producer, topic, key, value)


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

    ``written`` holds, per (topic, partition), the offset after the last record of a committed
    transaction, from the delivery reports: where a reader of this stage's output must read up to.

    :param make: builds a producer of the stage's transactional id, transactions initialised,
        that reports each delivery to the callback it is given (``on_delivery``).
    """

    def __init__(self, make: Callable[[Callable[[KafkaError | None, Message], None]], Producer]) -> None:
        self._make = make
        self.written: dict[tuple[str, int], int] = {}
        self._delivered: dict[tuple[str, int], int] = {}  # the transaction in flight's
        self.producer, self._stuck = make(self._delivery), False

    def _delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is None:  # in order within a partition: the last is the highest
            self._delivered[message.topic(), message.partition()] = message.offset() + 1

    def written_upto(self) -> dict[str, dict[str, int]]:
        """``written`` as a result keeps it: topic -> partition (a string, as in JSON) -> offset."""
        upto: dict[str, dict[str, int]] = {}
        for (topic, partition), offset in sorted(self.written.items()):
            upto.setdefault(topic, {})[str(partition)] = offset
        return upto

    def _committed_deliveries(self) -> None:
        for key, offset in self._delivered.items():
            self.written[key] = max(offset, self.written.get(key, 0))

    def run(
        self, send: Callable[[Producer], None], consumer: Consumer | None = None,
        source: BoundedRead | None = None,
    ) -> None:
        """Commits, in one transaction, what ``send`` produces and the positions ``source`` has read up to."""
        give_up = time.monotonic() + errors.OUTAGE_SECONDS
        with deadline(errors.OUTAGE_SECONDS + 3 * client.TIMEOUT, "a transaction"):
            while not self._attempt(send, consumer, source, give_up):
                pass

    def _attempt(self, send, consumer: Consumer | None, source: BoundedRead | None, give_up: float) -> bool:
        """One try of the transaction: True once it has committed, False to send it again."""
        producer = self.producer
        producer.begin_transaction()
        self._delivered = {}
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
            self._committed_deliveries()
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
                    self._committed_deliveries()
                return done
            self._abort()
            raise
        except BaseException:
            self._abort()
            raise

    def _waiting(self, call: Callable, *args, bound: float | None = None):
        """``call(*args)`` on a thread of its own, so that the stage says at once when Kafka does
        not answer (a client's own errors arrive only once its call returns), and, with ``bound``,
        gives the call up as timed out after that many seconds: librdkafka's send of offsets can
        block past its timeout, for good, once the group coordinator has restarted
        (confluentinc/librdkafka#5456, #5511). The thread is then left to it, and the producer is
        not used again."""
        outcome: list = []

        def run() -> None:
            try:
                outcome.append((True, call(*args)))
            except BaseException as exc:
                outcome.append((False, exc))

        thread = threading.Thread(target=run, name="kafka-transaction-call", daemon=True)
        thread.start()
        thread.join(errors.OUTAGE_NOTICE_SECONDS)
        if not outcome:
            OUTAGE.began(f"a transaction call has waited {errors.OUTAGE_NOTICE_SECONDS:.0f}s")
            thread.join(None if bound is None else bound - errors.OUTAGE_NOTICE_SECONDS)
        if not outcome:
            self._stuck = True
            error = KafkaError(KafkaError._TIMED_OUT, f"no answer within {bound:.0f}s", retriable=True)
            raise KafkaException(error)
        done, value = outcome[0]
        if not done:
            raise value
        return value

    @staticmethod
    def _committed(consumer: Consumer, source: BoundedRead) -> bool:
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
        self.producer, self._stuck = self._make(self._delivery), False
        return True

    def _abort(self) -> None:
        if self._stuck:
            return
        try:
            self.producer.abort_transaction(client.TIMEOUT)
        except KafkaException as exc:  # a fenced or fatal producer cannot abort; the raise after it matters
            log.warning("aborting the transaction failed too: %s", exc)


@contextmanager
def deadline(seconds: float, what: str):
    """Exit the process if the block is still running after ``seconds``.

    The last guard against a Kafka client call that blocks past its own timeout (as librdkafka's
    send_offsets_to_transaction can, confluentinc/librdkafka#5456): a blocked C call cannot be
    interrupted, so the process ends instead. The task fails, Airflow retries it, and the
    retry's producer fences this one and aborts its open transaction.
    """
    def give_up() -> None:
        log.critical(
            "%s did not finish within %.0fs (the Kafka client is stuck); exiting so the task is retried",
            what, seconds,
        )
        logging.shutdown()
        os._exit(70)

    timer = threading.Timer(seconds, give_up)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
