"""Kafka at the edges: clients from one librdkafka config, reads, transactions.

A stage reads what its consumer group has not committed yet, either bounded (up to the end of the
topic as it was when the stage started, then it returns: the Airflow tasks) or following the topic
(continuous mode, until told to stop or to finish).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from include.pipeline import settings, shutdown
from include.pipeline.telemetry import Latencies, Tick

log = logging.getLogger(__name__)

PRODUCER_TUNING = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 20,
    "batch.size": 1_000_000,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 1_000_000,
    # Room for a dead-lettered record at the broker's largest size plus its headers.
    "message.max.bytes": 4 * 1024 * 1024,
}
CONSUMER_TUNING = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "isolation.level": "read_committed",
    "enable.partition.eof": True,
    "fetch.min.bytes": 100_000,
    "fetch.wait.max.ms": 100,
    # The prefetch queue is bounded by size, not left at its 64 MB default: a stage's memory
    # must not grow with its input, and a few MB ahead already keeps the stage busy.
    "queued.max.messages.kbytes": 1024,
    "fetch.queue.backoff.ms": 5,  # when it is full, fetch again soon (the default waits 1 s)
}
# Continuous mode: a fetch returns as soon as there is a record, and a produced record is sent
# almost at once (the transaction commit would flush it anyway, later).
FOLLOW_CONSUMER = {"fetch.min.bytes": 1}
FOLLOW_PRODUCER = {"linger.ms": 5}
TIMEOUT = 30.0  # seconds for metadata, commits and transaction calls
# How long a stage waits for Kafka to answer again (a broker restarting) before it fails: its
# transaction stays open meanwhile, and the broker aborts one open longer than librdkafka's
# transaction.timeout.ms (60 s), so longer would not help.
OUTAGE_SECONDS = 60.0
# A transaction call still waiting this long means Kafka does not answer (said at once).
OUTAGE_NOTICE_SECONDS = 5.0
BATCH_SIZE = 10_000


class Misconfigured(ValueError):
    """The client's settings cannot work (credentials, TLS trust, ACLs): no retry fixes them."""


class Kafka:
    """Clients for one cluster, built from a librdkafka config (the Airflow connection's extra).

    :param config: the librdkafka config; ``bootstrap.servers`` at least.
    :param origin: where it came from, for messages that say what to fix.
    """

    def __init__(self, config: dict, origin: str = "the Kafka config") -> None:
        if not config.get("bootstrap.servers"):
            raise ValueError(f"{origin} needs 'bootstrap.servers'")
        self.config, self.origin = dict(config), origin

    @classmethod
    def from_env(cls) -> Kafka:
        """KAFKA_CLIENT_CONFIG (a JSON librdkafka config file), else KAFKA_BOOTSTRAP_SERVERS."""
        path = os.environ.get("KAFKA_CLIENT_CONFIG")
        if not path:
            return cls({"bootstrap.servers": settings.bootstrap_servers()}, "KAFKA_BOOTSTRAP_SERVERS")
        try:
            config = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"KAFKA_CLIENT_CONFIG={path}: not a readable JSON librdkafka config ({exc})") from None
        return cls(config, f"KAFKA_CLIENT_CONFIG ({path})")

    def check(self, seconds: float = 10) -> None:
        """Fail fast, naming what to fix: credentials the cluster rejects or a certificate the
        client does not trust (``Misconfigured``, at the first refusal), or no answer at all."""
        refusals: list[KafkaError] = []
        admin = AdminClient({**self._base(quiet=True), "error_cb": refusals.append})
        ends = time.monotonic() + seconds
        while True:
            try:  # in short waits: a refusal comes through error_cb, served by poll()
                admin.list_topics(timeout=0.5)
                return
            except KafkaException as exc:
                last = exc.args[0]
            admin.poll(0)
            for error in refusals:
                if error.code() == KafkaError._AUTHENTICATION:
                    mechanism = self.config.get("sasl.mechanism", self.config.get("sasl.mechanisms", "GSSAPI"))
                    raise Misconfigured(
                        f"authentication failed for {self.config.get('sasl.username', '(no sasl.username)')} "
                        f"({mechanism}) at {self.config['bootstrap.servers']}: check {self.origin}'s "
                        "sasl.username / sasl.password"
                    )
                if error.code() == KafkaError._SSL:
                    raise Misconfigured(
                        f"TLS with {self.config['bootstrap.servers']} failed: {_reason(error)}. Check {self.origin}'s "
                        "ssl.ca.location (the CA that signed the brokers' certificates) and that each certificate "
                        "names the host it is reached at"
                    )
            if time.monotonic() > ends:
                raise ConnectionError(
                    f"cannot reach Kafka at {self.config['bootstrap.servers']} ({last.str()}): start the local "
                    "broker with `make kafka-up`, or point KAFKA_BOOTSTRAP_SERVERS / the kafka_default connection at yours"
                )

    def cluster_id(self) -> str:
        return self.admin().list_topics(timeout=TIMEOUT).cluster_id

    def admin(self, quiet: bool = False) -> AdminClient:
        return AdminClient(self._base(quiet))

    def producer(self, transactional_id: str | None = None, follow: bool = False) -> Producer:
        config = {**self._base(), **PRODUCER_TUNING, **(FOLLOW_PRODUCER if follow else {})}
        if transactional_id:
            config["transactional.id"] = transactional_id
        return Producer(config)

    def consumer(self, group_id: str, quiet: bool = False, follow: bool = False) -> Consumer:
        tuning = {**CONSUMER_TUNING, **(FOLLOW_CONSUMER if follow else {})}
        return Consumer({**self._base(quiet), **tuning, "group.id": group_id})

    def _base(self, quiet: bool = False) -> dict:
        # A consumer group in the connection would make every stage share one: each sets its own.
        base = {k: v for k, v in self.config.items() if k != "group.id"}
        # No librdkafka log line for every failed connect (a line every 50 ms while a broker is
        # down): its errors come to error_cb, and a quiet client's caller says what failed once.
        base["log_level"] = 2
        if not quiet:
            base["error_cb"] = self._on_error
        return base

    def _on_error(self, error: KafkaError) -> None:
        if error.code() in UNREACHABLE:
            OUTAGE.began(error.str(), self.config["bootstrap.servers"])
        else:
            log.warning("Kafka client error: %s", error.str())


# Errors that say the cluster is not answering (yet), as opposed to refusing.
UNREACHABLE = frozenset(
    {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE, KafkaError._TIMED_OUT}
)


class Outage:
    """One log line when Kafka stops answering and one when it answers again, instead of one per
    failed connect or retried call; a stage waits through an outage of up to OUTAGE_SECONDS.

    The errors a client queued while it was down arrive when it is next polled, after Kafka has
    answered again: for SETTLE_SECONDS after an outage ends, they are not a new one.
    """

    SETTLE_SECONDS = 10.0

    def __init__(self) -> None:
        self.since: float | None = None
        self.ended_at = -math.inf
        self.lock = threading.Lock()  # began() also comes from a transaction call's thread (Transactions)

    def began(self, reason: str, servers: str = "") -> None:
        with self.lock:
            now = time.monotonic()
            if self.since is not None or now - self.ended_at < self.SETTLE_SECONDS:
                return
            self.since = now
        log.warning(
            "Kafka%s does not answer (%s): waiting for it, up to %.0fs within a transaction",
            f" at {servers}" if servers else "", reason, OUTAGE_SECONDS,
        )

    def ended(self) -> None:
        with self.lock:
            if self.since is None:
                return
            since, self.since, self.ended_at = self.since, None, time.monotonic()
        log.warning("Kafka answers again, after %.0fs: going on", self.ended_at - since)


OUTAGE = Outage()  # per process: the clients of a stage share the one cluster


def _reason(error: KafkaError) -> str:
    # librdkafka's text names the broker, then the reason: "ssl://host:port/id: SSL handshake failed: ..."
    return error.str().split(": ", 1)[-1]


def create_topics(admin: AdminClient, partitions: int) -> tuple[list[str], list[str]]:
    """Create the pipeline's topics that do not exist yet, each replicated on up to 3 brokers
    (with 3, a write needs 2 in sync: one broker may fail); returns the names created and the
    names the principal may not create."""
    metadata = admin.list_topics(timeout=TIMEOUT)
    replication = min(3, len(metadata.brokers))
    durability = {"min.insync.replicas": str(replication - 1)} if replication == 3 else {}
    missing = [
        NewTopic(name, num_partitions=partitions, replication_factor=replication, config={**durability, **config})
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


class LagProbe:
    """The offsets that lag is made of, for topic -> consumer group pairs, keyed by (topic,
    partition): the last stable offsets (what read_committed readers see), the group's committed
    offsets where it has any, and the log start offsets. It only reads: each group's consumer is
    never assigned or subscribed, so it joins no group and commits nothing. A topic that does not
    exist yet has no partitions."""

    def __init__(self, kafka: Kafka, groups: dict[str, str], quiet: bool = False) -> None:
        self.consumers = {topic: kafka.consumer(group, quiet=quiet) for topic, group in groups.items()}

    def offsets(self, timeout: float = TIMEOUT) -> tuple[dict, dict, dict]:
        ends, committed, starts = {}, {}, {}
        for topic, consumer in self.consumers.items():
            metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
            if metadata is None or metadata.error is not None:
                continue
            partitions = [TopicPartition(topic, p) for p in sorted(metadata.partitions)]
            for tp in partitions:
                starts[topic, tp.partition], ends[topic, tp.partition] = consumer.get_watermark_offsets(tp, timeout=timeout)
            committed.update({(topic, tp.partition): tp.offset for tp in consumer.committed(partitions, timeout=timeout) if tp.offset >= 0})
        return ends, committed, starts

    def close(self) -> None:
        for consumer in self.consumers.values():
            consumer.close()


def offset_range(consumer: Consumer, topic: str) -> dict[int, tuple[int, int]]:
    """Per partition of ``topic``: (log start offset, end offset)."""
    metadata = retrying(consumer.list_topics, topic, timeout=TIMEOUT).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise RuntimeError(f"topic {topic!r} does not exist: run the create_topics task first")
    return {
        p: retrying(consumer.get_watermark_offsets, TopicPartition(topic, p), timeout=TIMEOUT)
        for p in sorted(metadata.partitions)
    }


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
    :param report: called after each committed batch with a ``telemetry.Tick``.
    """

    interval: float = 0.1
    finish: Callable[[], bool] = _never
    report: Callable[[Tick], None] | None = None

    def __post_init__(self) -> None:
        if not 0 < self.interval <= 60:
            raise ValueError(f"commit_interval_ms must be between 1 and 60000, got {self.interval * 1000:g}")

    def committed(self, stage: str, read: int, written: int, latencies: Latencies | None = None) -> None:
        """Report a committed batch."""
        if self.report is not None:
            self.report(Tick(stage, read, written, latencies or Latencies()))


class BoundedRead:
    """Batches of the committed records of ``topic`` after the group's committed offsets (or
    from the start, or from ``starts``, offsets its caller keeps itself, per partition), up to
    the end offsets seen when iteration starts (or ``upto``); with ``follow``, on past them up to
    the end offsets seen when ``follow.finish()`` first says True. A stop requested
    (``shutdown``) ends it between two batches, bounded or following.

    Afterwards ``ranges`` holds, per partition, [first offset, offset after the last record
    read], and ``lost`` counts offsets that retention deleted before this group read them.
    Iteration ends early, with a warning, if nothing arrives for ``idle_timeout`` seconds (an
    upstream transaction left open holds read_committed readers back until the broker aborts it).
    """

    def __init__(
        self, consumer: Consumer, topic: str, *, from_beginning: bool = False, starts: dict[int, int] | None = None,
        upto: dict[int, int] | None = None, batch_size: int = BATCH_SIZE, idle_timeout: float = TIMEOUT,
        follow: Follow | None = None,
    ) -> None:
        self.consumer, self.topic, self.from_beginning, self.upto = consumer, topic, from_beginning, upto
        self.starts, self.follow = starts, follow
        self.batch_size, self.idle_timeout = batch_size, idle_timeout
        self.ranges: dict[int, list[int]] = {}
        self.next: dict[int, int] = {}
        self.lost = 0

    def _bounds(self) -> tuple[dict[int, int], dict[int, int]]:
        consumer, topic = self.consumer, self.topic
        watermarks = offset_range(consumer, topic)
        partitions = [TopicPartition(topic, p) for p in watermarks]
        starts = {p: low for p, (low, _) in watermarks.items()}
        if self.starts is not None:
            read_from = self.starts
        elif self.from_beginning:
            read_from = {}
        else:
            read_from = {tp.partition: tp.offset for tp in retrying(consumer.committed, partitions, timeout=TIMEOUT)}
        for partition, offset in read_from.items():
            if offset >= 0 and partition in starts:
                low = watermarks[partition][0]
                if offset < low:
                    log.error("%s[%d]: offsets %d..%d were deleted before they were read", topic, partition, offset, low - 1)
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
        consumer, ranges, following = self.consumer, self.ranges, self.next
        consumer.assign([TopicPartition(self.topic, p, starts[p]) for p in sorted(pending)])
        last_progress = time.monotonic()
        while pending:
            if shutdown.requested():
                log.warning("%s: stopped reading at %s (%s)", self.topic, self.next, shutdown.reason())
                return
            if following_on and follow.finish():
                following_on, last_progress = False, time.monotonic()
                ends = {p: high for p, (_, high) in offset_range(consumer, self.topic).items()}
                pending = {p for p in pending if following[p] < ends[p]}
                continue
            batch: list[Message] = []
            moved = False
            opened = time.monotonic()
            while pending and len(batch) < self.batch_size:
                # Following, a batch collects for one interval (consume() waits that long unless
                # the batch fills); an idle stage so blocks in consume() and never spins.
                wait = follow.interval - (time.monotonic() - opened) if following_on else 0.5
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
            if moved:  # a batch, or only markers passed (an empty batch, so the stage commits them)
                last_progress = time.monotonic()
                OUTAGE.ended()
                yield batch
            elif not following_on and time.monotonic() - last_progress > self.idle_timeout:
                log.warning("%s: nothing new for %.0fs on partitions %s; ending early", self.topic, self.idle_timeout, sorted(pending))
                return

    def positions(self) -> list[TopicPartition]:
        """The offsets to commit once the batches so far are done, per partition read from."""
        return [TopicPartition(self.topic, p, end) for p, end in self.next.items() if end > self.ranges[p][0]]


def retrying(call, *args, **kwargs):
    """call(), again while Kafka does not answer or answers with a retriable error (a broker
    restarting, a coordinator still loading on a fresh broker, a leader moving), for up to
    OUTAGE_SECONDS."""
    give_up = time.monotonic() + OUTAGE_SECONDS
    while True:
        try:
            result = call(*args, **kwargs)
        except KafkaException as exc:
            error = exc.args[0]
            transient = error.retriable() or error.code() in UNREACHABLE | {KafkaError.NOT_COORDINATOR}
            if not transient or time.monotonic() > give_up:
                raise
            if error.code() in UNREACHABLE:
                OUTAGE.began(error.str())
            else:
                log.info("retrying after a transient Kafka error: %s", error.str())
            time.sleep(0.5)
            continue
        OUTAGE.ended()
        return result


def produce(
    producer: Producer, topic: str, key: bytes | None, value: bytes | None, headers=None, timestamp: int = 0,
) -> None:
    """produce(), waiting for room when the local queue is full instead of failing. A
    ``timestamp`` (epoch ms) carries an input record's time on; 0 is now."""
    while True:
        try:
            producer.produce(topic, value, key, headers=headers, timestamp=timestamp)
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

    :param make: builds a producer of the stage's transactional id, transactions initialised.
    """

    def __init__(self, make: Callable[[], Producer]) -> None:
        self._make = make
        self.producer, self._stuck = make(), False

    def run(
        self, send: Callable[[Producer], None], consumer: Consumer | None = None, source: BoundedRead | None = None,
    ) -> None:
        give_up = time.monotonic() + OUTAGE_SECONDS
        with deadline(OUTAGE_SECONDS + 3 * TIMEOUT, "a transaction"):
            while not self._attempt(send, consumer, source, give_up):
                pass

    def _attempt(self, send, consumer: Consumer | None, source: BoundedRead | None, give_up: float) -> bool:
        """One try of the transaction: True once it has committed, False to send it again."""
        producer = self.producer
        producer.begin_transaction()
        committing = False
        try:
            send(producer)
            if consumer is not None and source is not None:
                positions, group = source.positions(), consumer.consumer_group_metadata()
                bound = TIMEOUT + OUTAGE_NOTICE_SECONDS
                self._waiting(producer.send_offsets_to_transaction, positions, group, TIMEOUT, bound=bound)
            committing = True
            self._waiting(retrying, producer.commit_transaction, TIMEOUT)
            return True
        except KafkaException as exc:
            error = exc.args[0]
            if (not committing or error.txn_requires_abort()) and self._renewed(error, give_up):
                return False
            if committing and source is not None and error.retriable() and not error.fatal():
                # A commit that may or may not have gone through: the new producer's registration
                # settles it (the coordinator completes or aborts it), the group's offsets say which.
                self._renewed(error, math.inf, purge=False)  # the old one's commit is pending
                return self._committed(consumer, source)
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
        thread.join(OUTAGE_NOTICE_SECONDS)
        if not outcome:
            OUTAGE.began(f"a transaction call has waited {OUTAGE_NOTICE_SECONDS:.0f}s")
            thread.join(None if bound is None else bound - OUTAGE_NOTICE_SECONDS)
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
        committed = retrying(consumer.committed, positions, timeout=TIMEOUT)
        done = all(batch_ends[tp.partition] == tp.offset for tp in committed)
        log.info("the transaction in doubt has %s", "committed" if done else "not committed: sending it again")
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
            self.producer.abort_transaction(TIMEOUT)
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
        log.critical("%s did not finish within %.0fs (the Kafka client is stuck); exiting so the task is retried", what, seconds)
        logging.shutdown()
        os._exit(70)

    timer = threading.Timer(seconds, give_up)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


class Progress:
    """Logs counts and rates every few seconds, and a final line."""

    def __init__(self, what: str, every: float = 5.0) -> None:
        self.what, self.every = what, every
        self.count = 0
        self.started = self.logged = time.monotonic()

    def add(self, n: int) -> None:
        self.count += n
        now = time.monotonic()
        if now - self.logged >= self.every:
            self.logged = now
            log.info("%s: %d so far (%.0f/s)", self.what, self.count, self.rate)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        return self.count / max(self.seconds, 1e-9)

    def done(self) -> None:
        log.info("%s: %d in %.1fs (%.0f/s)", self.what, self.count, self.seconds, self.rate)
