"""The stages: the Kafka edge around the per-batch steps (``steps``, ``store_changes.changes``). Each
reads what is new in its input topic, one transaction per batch, and returns its counts and
input offset ranges (the task's XCom; reconcile checks them and keeps the manifest). Bounded by
default (the Airflow tasks); with ``follow`` (``kafka_io.reading.Follow``) the same stage runs
continuously, committing every ``follow.interval`` seconds or full batch."""

from __future__ import annotations

import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from confluent_kafka import Message, Producer, TopicPartition

from include.pipeline import (
    access,
    assignment,
    codec,
    dead_letters,
    generator,
    money,
    settings,
    shutdown,
    state_codec,
    steps,
    telemetry,
    topology,
)
from include.pipeline.analyzer import Analyzer
from include.pipeline.assignment import Assignment
from include.pipeline.kafka_io.admin import create_topics as create
from include.pipeline.kafka_io.admin import partition_count
from include.pipeline.kafka_io.client import TIMEOUT, Kafka
from include.pipeline.kafka_io.errors import retrying
from include.pipeline.kafka_io.reading import BoundedRead, Follow
from include.pipeline.kafka_io.writing import Transactions, WrittenEnds, produce, produce_all
from include.pipeline.metrics_store import MetricsStore
from include.pipeline.orders import Order, parse
from include.pipeline.progress import Progress
from include.pipeline.results import (
    AnalyzeResult,
    CreateTopicsResult,
    Export,
    GenerateResult,
    InputRanges,
    ProcessResult,
    ReplayResult,
    SinkResult,
)
from include.pipeline.store_changes import Changes
from include.pipeline.topology import ANALYZE, GENERATE, PROCESS, REPLAY, SINK, Stage
from include.pipeline.windows import (
    LEGACY,
    Aggregate,
    Ledger,
    LedgerMark,
    Partial,
    TumblingWindows,
    decode_partial,
    ledger_of,
    partial_key_bytes,
)

log = logging.getLogger(__name__)

# A huge or throttled generate run commits in slices, keeping each transaction short.
GENERATE_TXN_RECORDS = 50_000
GENERATE_TXN_SECONDS = 5.0
RESTORE_BATCH = 16
# Its committed offsets say analyze-state no longer holds state of the version before partitions.
MIGRATED = topology.group("analyze-state-migrated")
# Following, analyze forgets closed windows and old order ids this often (a bounded run does
# it once, at its end).
EXPIRE_SECONDS = 60.0


def create_topics(
    kafka: Kafka, stages: tuple[str, ...] | list[str] = (), workers: int = 1,
) -> CreateTopicsResult:
    """Create the topics that are missing (``settings.partitions()`` each, replicated up to 3
    times, as the cluster allows), then check that the principal holds the ACLs ``stages`` need
    and that the inputs of the consuming ones have a partition for each of ``workers``: a run
    that cannot work fails here, in its first task, not in the stage that needs it. With analyze
    among ``stages``, its state of the version before partitions is migrated (``migrate_state``)
    here, before any of its instances runs."""
    access.ready(kafka)
    created, denied = create(kafka.admin(), settings.partitions())
    if denied:
        grants = [access.Grant("topic", name, "Create") for name in denied]
        raise access.AccessDenied(access.principal(kafka), grants)
    log.info("topics created: %s", created or "none, all exist")
    access.check(kafka, tuple(stages))
    if ANALYZE.name in stages:
        migrate_state(kafka)
    for name in stages:
        if (topic := topology.STAGES[name].input) is not None:
            assignment.check(workers, partition_count(kafka.admin(), topic), topic)
    return CreateTopicsResult(created=created)


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


def _transactions(
    kafka: Kafka, stage: Stage, follow: bool = False, transactional_id: str | None = None,
) -> Transactions:
    txn_id = transactional_id or stage.transactional_id
    return Transactions(lambda: transactional_producer(kafka, txn_id, follow))


def _fence(kafka: Kafka, stage: Stage, instances: list[Assignment]) -> None:
    """Fence the transactional ids of ``instances`` (registering one aborts what its producer
    left open and stops it committing): they share a partition with the instance about to read."""
    if not instances:
        return
    ids = [instance.transactional_id(stage.group) for instance in instances]
    with ThreadPoolExecutor(min(8, len(ids))) as pool:  # a round trip each: at once
        list(pool.map(lambda txn_id: transactional_producer(kafka, txn_id), ids))
    log.info("%s: fenced the %d other splits' transactional ids that share its partitions",
             stage.name, len(ids))


def generate(
    kafka: Kafka, orders: int = 0, start: datetime | None = None, end: datetime | None = None,
    rate: float = 0, invalid_ratio: float = 0.0, seed: int | str | None = None, follow: Follow | None = None,
) -> GenerateResult:
    """Produce ``orders`` order events with event times over [start, end); following, ``rate``
    orders a second, with event times of the moment, until told to stop or finish."""
    if follow is not None and rate <= 0:
        raise ValueError(f"a continuous generate needs a rate above 0 (orders a second), got {rate}")
    if follow is None and not (start and end and start < end):
        raise ValueError(f"generate needs a non-empty time range, got [{start}, {end})")
    access.ready(kafka, [GENERATE.name])
    txns = _transactions(kafka, GENERATE, follow is not None)
    progress = Progress(f"generate -> {settings.ORDERS}")
    if follow is not None:
        _generate_following(txns, rate, invalid_ratio, seed, follow, progress)
    else:
        _generate_bounded(txns, orders, start, end, rate, invalid_ratio, seed, progress)
    progress.done()
    return GenerateResult(
        generated=progress.count, seconds=round(progress.seconds, 3), written_upto=txns.written_upto(),
    )


def _generate_bounded(
    txns: Transactions, orders: int, start: datetime, end: datetime, rate: float, invalid_ratio: float,
    seed: int | str | None, progress: Progress,
) -> None:
    # Throttled, a chunk is a tenth of a second of records, so the rate holds at that scale.
    size = min(generator.CHUNK, max(1, int(rate / 10))) if rate > 0 else generator.CHUNK
    chunks = generator.chunks(orders, start, end, invalid_ratio, seed, size)
    chunk = next(chunks, [])
    while chunk and not shutdown.requested():
        slice_started, sent = time.monotonic(), []

        def send(producer: Producer) -> None:
            nonlocal chunk
            for again in sent:  # a transaction sent anew (Transactions) first has what it had
                produce_all(producer, settings.ORDERS, again, txns.ends)
            while chunk and sum(map(len, sent)) < GENERATE_TXN_RECORDS and not shutdown.requested() and (
                time.monotonic() - slice_started < GENERATE_TXN_SECONDS
            ):
                produce_all(producer, settings.ORDERS, chunk, txns.ends)
                sent.append(chunk)
                progress.add(len(chunk))
                if rate > 0:
                    _throttle(progress.count, rate, progress.started)
                chunk = next(chunks, [])

        txns.run(send)


def _generate_following(
    txns: Transactions, rate: float, invalid_ratio: float, seed: int | str | None, follow: Follow,
    progress: Progress,
) -> None:
    """Every interval, one transaction of the orders due by then (up to GENERATE_TXN_RECORDS:
    behind, it catches up over several), with event times since the last."""
    last = datetime.now(timezone.utc)
    while not (shutdown.requested() or follow.finish()):
        tick, now = time.monotonic(), datetime.now(timezone.utc)
        due = min(int(rate * (tick - progress.started)) - progress.count, GENERATE_TXN_RECORDS)
        if due > 0:
            # A fixed seed would draw the same order ids every interval: each interval gets its own.
            interval_seed = None if seed is None else f"{seed}:{progress.count}"
            chunks = list(generator.chunks(due, last, now, invalid_ratio, interval_seed))
            txns.run(lambda producer: _send_orders(producer, chunks, txns.ends))
            progress.add(due)
            follow.committed(GENERATE.name, 0, due)
            last = now
        time.sleep(max(0.0, follow.interval - (time.monotonic() - tick)))


def _throttle(sent: int, rate: float, started: float) -> None:
    ahead = sent / rate - (time.monotonic() - started)
    if ahead > 0:
        time.sleep(ahead)


def _send_orders(producer: Producer, chunks: list[list[tuple[bytes, bytes]]], ends: WrittenEnds) -> None:
    for chunk in chunks:
        produce_all(producer, settings.ORDERS, chunk, ends)


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
        self.txns = _transactions(self.kafka, self.stage, following, txn_id)
        _fence(self.kafka, self.stage, self.worker.rivals(count))
        self.consumer = self.kafka.consumer(self.stage.group, follow=following)
        self.source = BoundedRead(
            self.consumer, self.stage.input, admin=self.admin, follow=self.follow, partitions=self.partitions,
        )
        if self.worker.workers > 1:
            log.info("%s, %s: partitions %s of %s",
                     self.stage.name, self.worker, self.partitions, self.stage.input)
        return self

    def __exit__(self, error_type, *_) -> None:
        self.consumer.close()
        if error_type is None:
            self.progress.done()

    def run(self, step: Callable[[list[Message]], steps.Processed | steps.Analyzed]) -> None:
        """Each batch of the input through ``step``, its outputs and offsets in one transaction."""
        output = self.stage.outputs[0]
        for batch in self.source:
            out = step(batch)

            def send(producer: Producer) -> None:
                _send(producer, output, out.records, self.txns.ends)
                for r in out.rejected:
                    dead_letters.send(producer, batch[r.index], r.reason, r.detail)
                _send_state(producer, out.state, self.changelog)

            self.txns.run(send, self.consumer, self.source)
            self.written += len(out.records)
            self.reasons.update(rejection.reason for rejection in out.rejected)
            self.progress.add(len(batch))
            if self.follow is not None:
                self.follow.committed(self.stage.name, len(batch), len(out.records))

    @property
    def read(self) -> int:
        """Records read."""
        return self.progress.count

    @property
    def input(self) -> InputRanges:
        """The offsets read, per partition."""
        return _ranges(self.stage.input, self.source)

    def written_to(self) -> dict[str, int]:
        """Records written per topic: the output topic's, and the dead letters."""
        return {self.stage.outputs[0]: self.written, settings.DLQ: sum(self.reasons.values())}


def _send(producer: Producer, topic: str, records: list[steps.Outgoing], ends: WrittenEnds) -> None:
    tail = ends.tail(producer, topic, records, lambda record: record.key)
    send = producer.produce  # called directly: the hot path of process
    for r in records[:tail.start]:
        try:
            send(topic, r.value, r.key, headers=r.headers, timestamp=r.timestamp)
        except BufferError:
            produce(producer, topic, r.key, r.value, r.headers, r.timestamp)
    rest = [(r.key, r.value, r.headers, r.timestamp) for r in records[tail.start:]]
    ends.produce_tail(producer, topic, tail, rest)


def process(kafka: Kafka, follow: Follow | None = None, workers: int = 1, worker: int = 0) -> ProcessResult:
    """orders -> processed-orders (valid, enriched, keyed by order id) or orders-dlq (anything
    else, unchanged); as ``worker`` of ``workers``, the orders of its share of the partitions."""
    with TransformLoop(kafka, PROCESS, follow, Assignment(workers, worker)) as loop:
        loop.run(lambda batch: steps.process(batch, datetime.now(timezone.utc).isoformat()))
    return ProcessResult(
        input=loop.input, read=loop.read, valid=loop.written, reasons=dict(loop.reasons),
        written=loop.written_to(), written_upto=loop.txns.written_upto(),
    )


def analyze(
    kafka: Kafka, grace_seconds: float = settings.GRACE_SECONDS,
    dedup_horizon_seconds: float = settings.DEDUP_HORIZON_SECONDS, follow: Follow | None = None,
    workers: int = 1, worker: int = 0,
) -> AnalyzeResult:
    """processed-orders -> 1-minute tumbling windows per product -> product-metrics.

    Each partition of processed-orders is counted with a state of its own (its windows, the
    order ids it counted, its stream time, its ledger), so ``workers`` instances each count their
    share of the partitions, and the metrics are partials per partition that the sink adds up.
    Duplicates and late orders go to orders-dlq. The changed partials, the state that carries
    them to the next run (analyze-state) and the consumed offsets commit in one transaction per
    batch.
    """
    with TransformLoop(kafka, ANALYZE, follow, Assignment(workers, worker)) as loop:
        analyzers = restore_analyzers(
            kafka, loop.partitions, lambda: Analyzer.create(grace_seconds, dedup_horizon_seconds),
        )
        before = _counted(analyzers)
        stale = _expired(analyzers)  # what a run that died before its last step left behind
        expire_at = time.monotonic() + EXPIRE_SECONDS

        def step(batch: list[Message]) -> steps.Analyzed:
            nonlocal stale, expire_at
            out = steps.analyze(analyzers, batch)
            if follow is not None and time.monotonic() >= expire_at:
                out.state += stale + _expired(analyzers)
                stale, expire_at = [], time.monotonic() + EXPIRE_SECONDS
            return out

        loop.run(step)
        tombstones = stale + _expired(analyzers)
        if tombstones:
            loop.txns.run(lambda producer: _send_state(producer, tombstones, loop.changelog))
    after = _counted(analyzers)
    return AnalyzeResult(
        input=loop.input, read=loop.read, reasons=dict(loop.reasons), written=loop.written_to(),
        written_upto=loop.txns.written_upto(), counted=after.count - before.count,
        counted_revenue=money.subtract(after.revenue, before.revenue),
        ledger_before=before, ledger_after=after,
        open_windows=sum(len(a.windows.aggregates) for a in analyzers.values()),
        remembered_order_ids=sum(len(a.seen) for a in analyzers.values()),
    )


def _counted(analyzers: dict[int, Analyzer]) -> Ledger:
    """The partitions' ledgers as one."""
    total = Ledger()
    for analyzer in analyzers.values():
        total = total.plus(analyzer.ledger)
    return total


def _expired(analyzers: dict[int, Analyzer]) -> list[tuple[bytes, bytes | None]]:
    return [record for p, a in analyzers.items() for record in state_codec.scoped(p, a.expire())]


def _send_state(producer: Producer, records: list[tuple[bytes, bytes | None]], changelog: int) -> None:
    """State records to the changelog partition of the processed-orders partition they belong to."""
    for key, value in records:
        partition, _ = state_codec.scope_of(key)
        where = -1 if partition is None else state_codec.changelog_partition(partition, changelog)
        produce(producer, settings.ANALYZE_STATE, key, value, partition=where)


def restore_analyzers(
    kafka: Kafka, partitions: list[int], make: Callable[[], Analyzer],
) -> dict[int, Analyzer]:
    """An analyzer per partition of processed-orders in ``partitions``, with the state the
    analyze-state changelog holds for it (read from the changelog partitions that hold theirs)."""
    analyzers = {partition: make() for partition in partitions}
    admin = kafka.admin()
    changelog = partition_count(admin, settings.ANALYZE_STATE)
    read = sorted({state_codec.changelog_partition(p, changelog) for p in partitions})
    # Reads from the start and never commits: the group id is only a name here. Two passes (see
    # Analyzer.restore), in small batches: a segment of order ids is a large record.
    with closing(kafka.consumer(topology.group("analyze-state-reader"))) as consumer:
        first = BoundedRead(
            consumer, settings.ANALYZE_STATE, admin=admin, from_beginning=True, batch_size=RESTORE_BATCH,
            partitions=read,
        )
        legacy: set[bytes] = set()
        for batch in first:
            for message in batch:
                partition, key = state_codec.scope_of(message.key())
                if partition is None:
                    (legacy.add if message.value() is not None else legacy.discard)(key)
                elif partition in analyzers:
                    analyzers[partition].restore(key, message.value())
        if legacy:
            raise ValueError(
                f"{settings.ANALYZE_STATE} holds state of the version before partitions (keys such as "
                f"{min(legacy)[:40]!r}): run the create_topics task first, which migrates it"
            )
        upto = {partition: end for partition, (_, end) in first.ranges.items()}
        again = BoundedRead(
            consumer, settings.ANALYZE_STATE, admin=admin, from_beginning=True, upto=upto,
            batch_size=RESTORE_BATCH, partitions=read,
        )
        for batch in again:
            for message in batch:
                partition, key = state_codec.scope_of(message.key())
                if partition in analyzers:
                    analyzers[partition].restore_ids(key, message.value())
    shutdown.check()  # half the state is no state: stop before counting anything against it
    log.info(
        "analyze state of %d partitions: %d open (window, product) aggregates, %d order ids remembered, "
        "%d counted so far", len(analyzers), sum(len(a.windows.aggregates) for a in analyzers.values()),
        sum(len(a.seen) for a in analyzers.values()), _counted(analyzers).count,
    )
    return analyzers


def migrate_state(kafka: Kafka) -> None:
    """Give the analyze state of the version before partitions (keys without a partition) to each
    partition of processed-orders, in one transaction of analyze's (whose registration fences a
    zombie analyze first): its stream time and the order ids it counted to every partition; its
    windows and ledger are dropped, as the metrics they made stay in the store as its ``LEGACY``
    partials. The same transaction commits the offsets it read up to in the group
    ``MIGRATED``, so the changelog is read for this only until it has been migrated once (or
    found to need nothing)."""
    with closing(kafka.consumer(MIGRATED)) as consumer:
        admin = kafka.admin()
        changelog = partition_count(admin, settings.ANALYZE_STATE)
        tps = [TopicPartition(settings.ANALYZE_STATE, p) for p in range(changelog)]
        if any(tp.offset >= 0 for tp in retrying(consumer.committed, tps, timeout=TIMEOUT)):
            return
        txns = _transactions(kafka, ANALYZE)  # registered before reading: what a zombie left is settled
        live: dict[bytes, bytes | None] = {}
        state = BoundedRead(
            consumer, settings.ANALYZE_STATE, admin=admin, from_beginning=True, batch_size=RESTORE_BATCH,
        )
        for batch in state:
            for message in batch:
                if state_codec.scope_of(message.key())[0] is None:
                    live[message.key()] = message.value()
        if not state.positions():
            return  # an empty changelog: nothing to migrate, nothing to mark yet
        live = {key: value for key, value in live.items() if value is not None}
        partitions = partition_count(admin, settings.PROCESSED)
        carried = [
            (key, value) for key, value in live.items()
            if state_codec.is_segment(key)
            or isinstance(state_codec.decode(key, value), state_codec.Watermark)
        ]
        records = [record for p in range(partitions) for record in state_codec.scoped(p, carried)]
        records += [(key, None) for key in live]
        txns.run(lambda producer: _send_state(producer, records, changelog), consumer, state)
    if live:
        log.warning(
            "migrated the analyze state of the version before partitions to %d partitions: %d segments of "
            "order ids and the watermark copied to each, %d windows and the ledger left to the store "
            "(their metrics are its partials of partition %d)", partitions,
            sum(map(state_codec.is_segment, live)), sum(key.startswith(b"window:") for key in live), LEGACY,
        )


def sink(
    kafka: Kafka, store: MetricsStore | None = None, metrics_json_days: int = settings.METRICS_JSON_DAYS,
    follow: Follow | None = None,
) -> SinkResult:
    """product-metrics -> the metrics store (upserted by window and product), then the
    metrics.json export of its last ``metrics_json_days`` days (0: no export).

    Each batch's rows, the store's totals, the newest analyze ledger its records carry (what the
    totals add up to: reconcile compares the two) and the offsets read up to commit in one
    database transaction, and a run resumes from the store's offsets, so a crash at any point
    neither applies a batch twice nor skips one. A store without rows reads the (compacted)
    topic from its start, or, when it imports an old metrics.json, from the group's offsets that
    file was written up to. The group's offsets are committed afterwards, for Kafka tools to see the lag.
    """
    if metrics_json_days < 0:
        raise ValueError(f"metrics_json_days must be 0 (no export) or more, got {metrics_json_days}")
    store = store or MetricsStore.default()
    access.ready(kafka, [SINK.name])
    cluster = kafka.cluster_id()
    opened = store.open(cluster)
    imports = settings.metrics_path() if opened.new and settings.metrics_path().exists() else None
    inserted = updated = imported = 0
    progress = Progress(f"sink {settings.METRICS} -> {store.name}")
    with closing(kafka.consumer(SINK.group, follow=follow is not None)) as consumer:
        starts = None if imports else opened.offsets
        source = BoundedRead(consumer, settings.METRICS, admin=kafka.admin(), starts=starts, follow=follow)
        stored, claimed = opened.offsets, not opened.new
        for batch in source:
            changes = _store_batch(store, cluster, batch, stored, dict(source.next), imports)
            stored, claimed = dict(source.next), True
            inserted, updated = inserted + changes.inserted, updated + changes.updated
            imported += changes.imported
            progress.add(len(batch))
            if follow is not None:
                _visible(follow, batch, changes.inserted + changes.updated)
                if positions := source.positions():  # for Kafka tools to see the lag as it goes
                    consumer.commit(offsets=positions, asynchronous=True)
        if not claimed:  # a new store is claimed (and imports) even with nothing to read
            imported = _store_batch(store, cluster, [], stored, stored, imports).imported
        if positions := source.positions():
            retrying(consumer.commit, offsets=positions, asynchronous=False)
    progress.done()
    totals = store.totals()
    return SinkResult(
        input=_ranges(settings.METRICS, source), read=progress.count, store=store.name, imported=imported,
        rows_inserted=inserted, rows_updated=updated, metrics=totals.rows,
        order_count=totals.order_count, total_revenue=totals.total_revenue,
        counted_revenue=totals.counted_revenue, ledger=totals.ledger,
        export=export_metrics_json(store, metrics_json_days),
    )


def _store_batch(
    store: MetricsStore, cluster: str, batch: list[Message], read_from: dict[int, int],
    read_to: dict[int, int], imports: Path | None,
) -> Changes:
    """One sink transaction; returns what it changed (an import included)."""
    records = [_partial(message) for message in batch]
    ledgers = [_mark(message) for message in batch]
    with store.transaction(cluster, read_from, imports) as txn:
        changes = txn.apply(records)
        txn.totals.note(ledgers)
        txn.set_offsets(settings.METRICS, read_to)
    changes.imported = txn.imported
    return changes


def _visible(follow: Follow, batch: list[Message], changed: int) -> None:
    """Report a following sink's batch: its orders' end-to-end latencies end now, as its totals
    become visible to readers."""
    visible_ms, since_ms = int(time.time() * 1000), int(follow.measure_since * 1000)
    latencies = telemetry.Latencies()
    for message in batch:
        latencies.add_origins(telemetry.origins(message.headers()), visible_ms, since_ms)
    follow.committed(SINK.name, len(batch), changed, latencies)


def export_metrics_json(store: MetricsStore, days: int) -> Export | None:
    """Replace metrics.json with the store's last ``days`` days of windows (0: leave it alone)."""
    path = settings.metrics_path()
    if not days:
        if path.exists():
            log.warning("metrics_json_days is 0: %s was left as it was and is no longer updated", path)
        return None
    export = Export(path=str(path), days=days, lines=store.export(path, days))
    log.info("exported the last %d days of windows to %s: %d lines", days, path, export.lines)
    return export


def _partial(message: Message) -> Partial:
    try:
        return decode_partial(message.value())
    except ValueError as exc:
        raise ValueError(f"{_where(message)}: {exc}") from None


def _mark(message: Message) -> LedgerMark | None:
    try:
        return ledger_of(message.headers())
    except ValueError as exc:
        raise ValueError(f"{_where(message)}: {exc}") from None


def _where(message: Message) -> str:
    return f"{settings.METRICS} partition {message.partition()} offset {message.offset()}"


def replay(kafka: Kafka, start: datetime, end: datetime, allow_partial: bool = False) -> ReplayResult:
    """Rebuild the metrics of the windows starting in [start, end) from processed-orders as Kafka
    retains it, and publish them to product-metrics (the sink then upserts them).

    It counts what the analyze stage counted: the records it has committed, less those it
    dead-lettered (late, duplicate, invalid: orders-dlq names their offsets), per partition as
    analyze does. Each window it rebuilds gets a partial of every partition (0 where it found
    none, ``LEGACY`` included): partials replace partials downstream, so nothing is counted twice.
    """
    access.ready(kafka, [REPLAY.name])
    low_s, high_s = (
        int((t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()) for t in (start, end)
    )
    upto = _analyzed_upto(kafka, allow_partial)
    rejected = _rejected_by_analyze(kafka)
    partitions = [LEGACY, *upto]
    windows = {partition: TumblingWindows() for partition in partitions}
    read = 0
    with closing(kafka.consumer(topology.group("replay-reader"))) as consumer:
        source = BoundedRead(
            consumer, settings.PROCESSED, admin=kafka.admin(), from_beginning=True, upto=upto,
        )
        for batch in source:
            read += len(batch)
            counted: dict[int, list[Order]] = {partition: [] for partition in windows}
            for message in batch:
                if (message.partition(), message.offset()) not in rejected and type(
                    order := parse(message.value())
                ) is Order and low_s <= order.window_start < high_s:
                    counted[message.partition()].append(order)
            for partition, found in counted.items():
                windows[partition].add_all(found)
    rebuilt = sorted({key for w in windows.values() for key in w.aggregates})
    records = [
        (partial_key_bytes((*key, p)), codec.encode(Partial(*key, p, aggregate.count, aggregate.total)))
        for key in rebuilt for p in partitions
        for aggregate in [windows[p].aggregates.get(key) or Aggregate()]
    ]
    _transactions(kafka, REPLAY).run(lambda producer: produce_all(producer, settings.METRICS, records))
    log.info("replay [%s, %s): %d records read, %d windows republished", start, end, read, len(rebuilt))
    return ReplayResult(
        range=(start.isoformat(), end.isoformat()), read=read, skipped_rejected=len(rejected),
        windows=len(rebuilt),
        order_count=sum(a.count for w in windows.values() for a in w.aggregates.values()),
    )


def _analyzed_upto(kafka: Kafka, allow_partial: bool) -> dict[int, int]:
    """Per partition of processed-orders, the offset analyze has committed up to. Refuses, unless
    ``allow_partial``, when retention has deleted the topic's first records."""
    with closing(kafka.consumer(ANALYZE.group)) as analyzed:
        count = partition_count(kafka.admin(), settings.PROCESSED)
        partitions = [TopicPartition(settings.PROCESSED, p) for p in range(count)]
        committed = retrying(analyzed.committed, partitions, timeout=TIMEOUT)
        starts = [retrying(analyzed.get_watermark_offsets, tp, timeout=TIMEOUT)[0] for tp in partitions]
    trimmed = {tp.partition: start for tp, start in zip(partitions, starts)}
    if any(trimmed.values()) and not allow_partial:
        raise RuntimeError(
            f"{settings.PROCESSED} no longer holds its first records (log start offsets {trimmed}): a replay "
            "would rebuild windows from part of their orders. Pass allow_partial=true to replay what is "
            "retained anyway."
        )
    return {tp.partition: max(tp.offset, 0) for tp in committed}


def _rejected_by_analyze(kafka: Kafka) -> set[tuple[int, int]]:
    """The (partition, offset) of each processed-orders record analyze dead-lettered."""
    rejected = set()
    with closing(kafka.consumer(topology.group("replay-reader"))) as consumer:
        for batch in BoundedRead(consumer, settings.DLQ, admin=kafka.admin(), from_beginning=True):
            for message in batch:
                letter = dead_letters.read(message)
                if letter.source_topic == settings.PROCESSED:
                    rejected.add((letter.source_partition, letter.source_offset))
    return rejected


def _ranges(topic: str, source: BoundedRead) -> InputRanges:
    partitions = {str(p): (first, following) for p, (first, following) in sorted(source.ranges.items())}
    held = {str(p): stopped_end for p, stopped_end in source.held.items()}
    return InputRanges(topic=topic, partitions=partitions, lost=source.lost, held=held)
