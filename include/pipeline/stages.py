"""The stages: the Kafka edge around the per-batch steps (``steps``, ``sink.changes``). Each
reads what is new in its input topic, one transaction per batch, and returns its counts and
input offset ranges (the task's XCom; reconcile checks them and keeps the manifest). Bounded by
default (the Airflow tasks); with ``follow`` (``kafka_io.Follow``) the same stage runs
continuously, committing every ``follow.interval`` seconds or full batch."""

from __future__ import annotations

import logging
import time
from collections import Counter
from contextlib import closing, contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from typing import Iterator

import msgspec
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from include.pipeline import (
    access, codec, dead_letters, generator, money, settings, shutdown, sink as sink_file, steps, telemetry,
)
from include.pipeline.analyzer import Analyzer
from include.pipeline.kafka_io import (
    TIMEOUT, BoundedRead, Follow, Kafka, Progress, Transactions, create_topics as create, produce, produce_all,
    retrying,
)
from include.pipeline.metrics_store import MetricsStore
from include.pipeline.orders import Order, parse
from include.pipeline.windows import (
    LedgerMark, Metric, TumblingWindows, decode_metric, key_bytes, ledger_of, metric,
)

log = logging.getLogger(__name__)

# A huge or throttled generate run commits in slices, keeping each transaction short.
GENERATE_TXN_RECORDS = 50_000
GENERATE_TXN_SECONDS = 5.0
RESTORE_BATCH = 16
# Following, analyze forgets closed windows and old order ids this often (a bounded run does
# it once, at its end).
EXPIRE_SECONDS = 60.0


def group(stage: str) -> str:
    return f"{settings.GROUP_PREFIX}-{stage}"


# The consuming stages' inputs as topic -> consumer group: what is left there is work to do.
INPUTS = {settings.ORDERS: group("process"), settings.PROCESSED: group("analyze"), settings.METRICS: group("sink")}


def create_topics(kafka: Kafka, stages: tuple[str, ...] | list[str] = ()) -> dict:
    """Create the topics that are missing (replicated up to 3 times, as the cluster allows), then
    check that the principal holds the ACLs ``stages`` need: a run lacking one fails here, in its
    first task, not in the stage that needs it."""
    kafka.check()
    created, denied = create(kafka.admin(), settings.PARTITIONS)
    if denied:
        raise access.AccessDenied(access.principal(kafka), [access.Grant("topic", name, "Create") for name in denied])
    log.info("topics created: %s", created or "none, all exist")
    access.check(kafka, tuple(stages))
    return {"created": created}


def _ready(kafka: Kafka, stage: str) -> None:
    """Fail fast: the cluster answers, takes the credentials and grants what ``stage`` needs."""
    kafka.check()
    access.check(kafka, (stage,))


def _transactional_producer(kafka: Kafka, stage: str, follow: bool = False) -> Producer:
    producer = kafka.producer(transactional_id=group(stage), follow=follow)
    retrying(access.init_transactions, kafka, producer)  # a broker may be coming back (Transactions)
    return producer


def _transactions(kafka: Kafka, stage: str, follow: bool = False) -> Transactions:
    return Transactions(lambda: _transactional_producer(kafka, stage, follow))


def generate(
    kafka: Kafka, orders: int = 0, start: datetime | None = None, end: datetime | None = None, rate: float = 0,
    invalid_ratio: float = 0.0, seed: int | str | None = None, follow: Follow | None = None,
) -> dict:
    """Produce ``orders`` order events with event times over [start, end); following, ``rate``
    orders a second, with event times of the moment, until told to stop or finish."""
    if follow is not None and rate <= 0:
        raise ValueError(f"a continuous generate needs a rate above 0 (orders a second), got {rate}")
    if follow is None and not (start and end and start < end):
        raise ValueError(f"generate needs a non-empty time range, got [{start}, {end})")
    _ready(kafka, "generate")
    txns = _transactions(kafka, "generate", follow is not None)
    progress = Progress(f"generate -> {settings.ORDERS}")
    if follow is not None:
        _generate_following(txns, rate, invalid_ratio, seed, follow, progress)
    else:
        _generate_bounded(txns, orders, start, end, rate, invalid_ratio, seed, progress)
    progress.done()
    return {"generated": progress.count, "seconds": round(progress.seconds, 3)}


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
                produce_all(producer, settings.ORDERS, again)
            while chunk and sum(map(len, sent)) < GENERATE_TXN_RECORDS and not shutdown.requested() and (
                time.monotonic() - slice_started < GENERATE_TXN_SECONDS
            ):
                produce_all(producer, settings.ORDERS, chunk)
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
            txns.run(lambda producer: _send_orders(producer, chunks))
            progress.add(due)
            follow.committed("generate", 0, due)
            last = now
        time.sleep(max(0.0, follow.interval - (time.monotonic() - tick)))


def _throttle(sent: int, rate: float, started: float) -> None:
    ahead = sent / rate - (time.monotonic() - started)
    if ahead > 0:
        time.sleep(ahead)


def _send_orders(producer: Producer, chunks: list[list[tuple[bytes, bytes]]]) -> None:
    for chunk in chunks:
        produce_all(producer, settings.ORDERS, chunk)


@contextmanager
def transactional_stage(
    kafka: Kafka, stage: str, follow: bool = False,
) -> Iterator[tuple[Consumer, Transactions]]:
    """The consumer and transactions of a consume-transform-produce stage. The fixed
    transactional id fences a zombie attempt of the same stage (a killed task's or process's
    producer) and aborts its open transaction before this attempt reads anything."""
    _ready(kafka, stage)
    txns = _transactions(kafka, stage, follow)
    with closing(kafka.consumer(group(stage), follow=follow)) as consumer:
        yield consumer, txns


def _send(producer: Producer, topic: str, records: list[steps.Outgoing]) -> None:
    send = producer.produce  # called directly: the hot path of process
    for r in records:
        try:
            send(topic, r.value, r.key, headers=r.headers, timestamp=r.timestamp)
        except BufferError:
            produce(producer, topic, r.key, r.value, r.headers, r.timestamp)


def _dead_letter(producer: Producer, batch: list[Message], rejected: list[steps.Rejection]) -> None:
    for r in rejected:
        dead_letters.send(producer, batch[r.index], r.reason, r.detail)


def process(kafka: Kafka, follow: Follow | None = None) -> dict:
    """orders -> processed-orders (valid, enriched) or orders-dlq (anything else, unchanged)."""
    reasons: Counter[str] = Counter()
    valid = 0
    progress = Progress(f"process {settings.ORDERS} -> {settings.PROCESSED}")
    with transactional_stage(kafka, "process", follow is not None) as (consumer, txns):
        source = BoundedRead(consumer, settings.ORDERS, follow=follow)
        for batch in source:
            out = steps.process(batch, datetime.now(timezone.utc).isoformat())

            def send(producer: Producer) -> None:
                _send(producer, settings.PROCESSED, out.valid)
                _dead_letter(producer, batch, out.rejected)

            txns.run(send, consumer, source)
            valid += len(out.valid)
            reasons.update(rejection.reason for rejection in out.rejected)
            progress.add(len(batch))
            if follow is not None:
                follow.committed("process", len(batch), len(batch))
    progress.done()
    invalid = sum(reasons.values())
    return {
        "input": _ranges(settings.ORDERS, source), "read": progress.count, "valid": valid, "invalid": invalid,
        "reasons": dict(reasons), "written": {settings.PROCESSED: valid, settings.DLQ: invalid},
    }


def analyze(
    kafka: Kafka, grace_seconds: float = settings.GRACE_SECONDS,
    dedup_horizon_seconds: float = settings.DEDUP_HORIZON_SECONDS, follow: Follow | None = None,
) -> dict:
    """processed-orders -> 1-minute tumbling windows per product -> product-metrics.

    Duplicates and late orders go to orders-dlq. The changed windows' totals, the state that
    carries them to the next run (analyze-state) and the consumed offsets commit in one
    transaction per batch.
    """
    reasons: Counter[str] = Counter()
    metrics_written = 0
    progress = Progress(f"analyze {settings.PROCESSED} -> {settings.METRICS}")
    with transactional_stage(kafka, "analyze", follow is not None) as (consumer, txns):
        analyzer = restore_analyzer(kafka, Analyzer.create(grace_seconds, dedup_horizon_seconds))
        before = replace(analyzer.ledger)
        stale = analyzer.expire()  # what a run that died before its last step left behind
        expire_at = time.monotonic() + EXPIRE_SECONDS
        source = BoundedRead(consumer, settings.PROCESSED, follow=follow)
        for batch in source:
            out = steps.analyze(analyzer, batch)
            if follow is not None and time.monotonic() >= expire_at:
                out.state += stale + analyzer.expire()
                stale, expire_at = [], time.monotonic() + EXPIRE_SECONDS

            def send(producer: Producer) -> None:
                _send(producer, settings.METRICS, out.metrics)
                _dead_letter(producer, batch, out.rejected)
                _send_state(producer, out.state)

            txns.run(send, consumer, source)
            metrics_written += len(out.metrics)
            reasons.update(rejection.reason for rejection in out.rejected)
            progress.add(len(batch))
            if follow is not None:
                follow.committed("analyze", len(batch), len(out.metrics))
        tombstones = stale + analyzer.expire()
        if tombstones:
            txns.run(lambda producer: _send_state(producer, tombstones))
    progress.done()
    rejected = sum(reasons.values())
    return {
        "input": _ranges(settings.PROCESSED, source), "read": progress.count,
        "counted": analyzer.ledger.count - before.count,
        "counted_revenue": str(money.subtract(analyzer.ledger.revenue, before.revenue)),
        "invalid": rejected - reasons["late"] - reasons["duplicate"],
        "late": reasons["late"], "duplicate": reasons["duplicate"], "reasons": dict(reasons),
        "written": {settings.METRICS: metrics_written, settings.DLQ: rejected},
        "ledger_before": before.to_json(), "ledger_after": analyzer.ledger.to_json(),
        "open_windows": len(analyzer.windows.aggregates), "remembered_order_ids": len(analyzer.seen),
    }


def _send_state(producer: Producer, records: list[tuple[bytes, bytes | None]]) -> None:
    for key, value in records:
        produce(producer, settings.ANALYZE_STATE, key, value)


def restore_analyzer(kafka: Kafka, analyzer: Analyzer) -> Analyzer:
    # Reads from the start and never commits: the group id is only a name here. Two passes (see
    # Analyzer.restore), in small batches: a segment of order ids is a large record.
    with closing(kafka.consumer(group("analyze-state-reader"))) as consumer:
        first = BoundedRead(consumer, settings.ANALYZE_STATE, from_beginning=True, batch_size=RESTORE_BATCH)
        for batch in first:
            for message in batch:
                analyzer.restore(message.key(), message.value())
        upto = {partition: end for partition, (_, end) in first.ranges.items()}
        for batch in BoundedRead(consumer, settings.ANALYZE_STATE, from_beginning=True, upto=upto, batch_size=RESTORE_BATCH):
            for message in batch:
                analyzer.restore_ids(message.key(), message.value())
    shutdown.check()  # half the state is no state: stop before counting anything against it
    log.info(
        "analyze state: %d open (window, product) aggregates, %d order ids remembered, %d counted so far",
        len(analyzer.windows.aggregates), len(analyzer.seen), analyzer.ledger.count,
    )
    return analyzer


def sink(
    kafka: Kafka, store: MetricsStore | None = None, metrics_json_days: int = settings.METRICS_JSON_DAYS,
    follow: Follow | None = None,
) -> dict:
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
    _ready(kafka, "sink")
    cluster = kafka.cluster_id()
    opened = store.open(cluster)
    legacy = settings.metrics_path() if opened.new and settings.metrics_path().exists() else None
    counts = Counter()
    progress = Progress(f"sink {settings.METRICS} -> {store.name}")

    def commit(batch: list[Message]) -> int:
        records = [_metric(message) for message in batch]
        ledgers = [_ledger(message) for message in batch]
        with store.transaction(cluster) as txn:
            if txn.offsets(settings.METRICS) != written:
                raise RuntimeError(
                    f"the offsets in the metrics store {store.name} moved while this sink ran: another sink writes "
                    "to it. Run one sink per store (the kafka_pipeline pool does)"
                )
            if legacy and not counts["transactions"]:
                counts["imported"] = txn.import_metrics(sink_file.read_lines(legacy))
                log.info("imported %d lines of %s into %s", counts["imported"], legacy, store.name)
            changes = txn.apply(records)
            txn.totals.note(ledgers)
            txn.set_offsets(settings.METRICS, source.next)
        written.update(source.next)
        counts.update(transactions=1, inserted=changes.inserted, updated=changes.updated)
        return changes.inserted + changes.updated

    with closing(kafka.consumer(group("sink"), follow=follow is not None)) as consumer:
        starts = None if legacy else opened.offsets
        source = BoundedRead(consumer, settings.METRICS, starts=starts, follow=follow)
        written = dict(opened.offsets)
        for batch in source:
            changed = commit(batch)
            progress.add(len(batch))
            if follow is not None:
                visible_ms = int(time.time() * 1000)  # the new totals are visible to readers from now
                latencies = telemetry.Latencies()
                for message in batch:
                    latencies.add_origins(telemetry.origins(message.headers()), visible_ms)
                follow.committed("sink", len(batch), changed, latencies)
                if positions := source.positions():  # for Kafka tools to see the lag as it goes
                    consumer.commit(offsets=positions, asynchronous=True)
        if opened.new and not counts["transactions"]:  # claim the store (and import) even with nothing to read
            commit([])
        if positions := source.positions():
            retrying(consumer.commit, offsets=positions, asynchronous=False)
    progress.done()
    totals = store.totals()
    export = None
    path = settings.metrics_path()
    if metrics_json_days:
        export = {"path": str(path), "days": metrics_json_days, "lines": store.export(path, metrics_json_days)}
        log.info("exported the last %d days of windows to %s: %d lines", metrics_json_days, path, export["lines"])
    elif path.exists():
        log.warning("metrics_json_days is 0: %s was left as it was and is no longer updated", path)
    return {
        "input": _ranges(settings.METRICS, source), "read": progress.count, "store": store.name,
        "imported": counts["imported"], "rows_changed": counts["inserted"] + counts["updated"],
        "rows_inserted": counts["inserted"], "rows_updated": counts["updated"],
        "metrics": totals.rows, "order_count": totals.order_count, "total_revenue": str(totals.total_revenue),
        "ledger": msgspec.to_builtins(totals.ledger), "export": export,
    }


def _metric(message: Message) -> Metric:
    try:
        return decode_metric(message.value())
    except ValueError as exc:
        raise ValueError(f"{_where(message)}: {exc}") from None


def _ledger(message: Message) -> LedgerMark | None:
    try:
        return ledger_of(message.headers())
    except ValueError as exc:
        raise ValueError(f"{_where(message)}: {exc}") from None


def _where(message: Message) -> str:
    return f"{settings.METRICS} partition {message.partition()} offset {message.offset()}"


def replay(kafka: Kafka, start: datetime, end: datetime, allow_partial: bool = False) -> dict:
    """Rebuild the metrics of the windows starting in [start, end) from processed-orders as Kafka
    retains it, and publish them to product-metrics (the sink then upserts them).

    It counts what the analyze stage counted: the records it has committed, less those it
    dead-lettered (late, duplicate, invalid: orders-dlq names their offsets). Totals replace
    totals downstream, so nothing is counted twice.
    """
    _ready(kafka, "replay")
    low_s, high_s = (int((t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()) for t in (start, end))
    with closing(kafka.consumer(group("analyze"))) as analyzed:
        partitions = [TopicPartition(settings.PROCESSED, p) for p in range(_partition_count(kafka, settings.PROCESSED))]
        upto = {tp.partition: max(tp.offset, 0) for tp in retrying(analyzed.committed, partitions, timeout=TIMEOUT)}
        trimmed = {tp.partition: retrying(analyzed.get_watermark_offsets, tp, timeout=TIMEOUT)[0] for tp in partitions}
    if any(trimmed.values()) and not allow_partial:
        raise RuntimeError(
            f"{settings.PROCESSED} no longer holds its first records (log start offsets {trimmed}): a replay would "
            "rebuild windows from part of their orders. Pass allow_partial=true to replay what is retained anyway."
        )
    rejected = set()
    with closing(kafka.consumer(group("replay-reader"))) as consumer:
        for batch in BoundedRead(consumer, settings.DLQ, from_beginning=True):
            for message in batch:
                letter = dead_letters.read(message)
                if letter.source_topic == settings.PROCESSED:
                    rejected.add((letter.source_partition, letter.source_offset))
    windows = TumblingWindows()
    read = 0
    with closing(kafka.consumer(group("replay-reader"))) as consumer:
        for batch in BoundedRead(consumer, settings.PROCESSED, from_beginning=True, upto=upto):
            read += len(batch)
            windows.add_all(
                order for message in batch
                if (message.partition(), message.offset()) not in rejected
                and type(order := parse(message.value())) is Order and low_s <= order.window_start < high_s
            )
    records = [
        (key_bytes(key), codec.encode(metric(key, aggregate))) for key, aggregate in sorted(windows.aggregates.items())
    ]
    _transactions(kafka, "replay").run(lambda producer: produce_all(producer, settings.METRICS, records))
    log.info("replay [%s, %s): %d records read, %d windows republished", start, end, read, len(windows.aggregates))
    return {
        "range": [start.isoformat(), end.isoformat()], "read": read, "skipped_rejected": len(rejected),
        "windows": len(windows.aggregates), "order_count": sum(a.count for a in windows.aggregates.values()),
    }


def _partition_count(kafka: Kafka, topic: str) -> int:
    metadata = kafka.admin().list_topics(topic, timeout=TIMEOUT).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise RuntimeError(f"topic {topic!r} does not exist: run the create_topics task first")
    return len(metadata.partitions)


def _ranges(topic: str, source: BoundedRead) -> dict:
    return {"topic": topic, "partitions": {str(p): r for p, r in sorted(source.ranges.items())}, "lost": source.lost}
