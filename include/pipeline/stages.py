"""The stages. Each is a bounded run over what is new in its input topic and returns its
counts and input offset ranges (the task's XCom; reconcile checks them and keeps the manifest)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from contextlib import closing, contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Iterator

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from include.pipeline import codec, generator, money, settings, sink as store
from include.pipeline.analyzer import Analyzer
from include.pipeline.kafka_io import (
    TIMEOUT, BoundedRead, Kafka, Progress, create_topics as create, produce, produce_all, retrying,
    transaction,
)
from include.pipeline.orders import Order, enrich, parse
from include.pipeline.windows import TumblingWindows, key_bytes, metric

log = logging.getLogger(__name__)

# A huge or throttled generate run commits in slices, keeping each transaction short.
GENERATE_TXN_RECORDS = 50_000
GENERATE_TXN_SECONDS = 5.0
RESTORE_BATCH = 16


def group(stage: str) -> str:
    return f"{settings.GROUP_PREFIX}-{stage}"


# The consuming stages' inputs as topic -> consumer group: what is left there is work to do.
INPUTS = {settings.ORDERS: group("process"), settings.PROCESSED: group("analyze"), settings.METRICS: group("sink")}


def create_topics(kafka: Kafka) -> dict:
    kafka.check()
    created = create(kafka.admin(), settings.PARTITIONS, settings.replication_factor())
    log.info("topics created: %s", created or "none, all exist")
    return {"created": created}


def generate(
    kafka: Kafka, orders: int, start: datetime, end: datetime, rate: float = 0,
    invalid_ratio: float = 0.0, seed: int | str | None = None,
) -> dict:
    """Produce ``orders`` order events with event times over [start, end)."""
    if end <= start:
        raise ValueError(f"generate needs a non-empty time range, got [{start}, {end})")
    kafka.check()
    producer = kafka.producer(transactional_id=group("generate"))
    producer.init_transactions(TIMEOUT)
    progress = Progress(f"generate -> {settings.ORDERS}")
    # Throttled, a chunk is a tenth of a second of records, so the rate holds at that scale.
    size = min(generator.CHUNK, max(1, int(rate / 10))) if rate > 0 else generator.CHUNK
    chunks = generator.chunks(orders, start, end, invalid_ratio, seed, size)
    chunk = next(chunks, [])
    while chunk:
        slice_started, slice_sent = time.monotonic(), 0
        with transaction(producer):
            while chunk and slice_sent < GENERATE_TXN_RECORDS and time.monotonic() - slice_started < GENERATE_TXN_SECONDS:
                produce_all(producer, settings.ORDERS, chunk)
                slice_sent += len(chunk)
                progress.add(len(chunk))
                if rate > 0:
                    _throttle(progress.count, rate, progress.started)
                chunk = next(chunks, [])
    progress.done()
    return {"generated": progress.count, "seconds": round(progress.seconds, 3)}


def _throttle(sent: int, rate: float, started: float) -> None:
    ahead = sent / rate - (time.monotonic() - started)
    if ahead > 0:
        time.sleep(ahead)


@contextmanager
def transactional_stage(kafka: Kafka, stage: str) -> Iterator[tuple[Consumer, Producer]]:
    """The consumer and transactional producer of a consume-transform-produce stage. The fixed
    transactional id fences a zombie attempt of the same stage (a killed task's producer) and
    aborts its open transaction before this attempt reads anything."""
    kafka.check()
    producer = kafka.producer(transactional_id=group(stage))
    producer.init_transactions(TIMEOUT)
    with closing(kafka.consumer(group(stage))) as consumer:
        yield consumer, producer


def process(kafka: Kafka) -> dict:
    """orders -> processed-orders (valid, enriched) or orders-dlq (anything else, unchanged)."""
    reasons: Counter[str] = Counter()
    valid = 0
    progress = Progress(f"process {settings.ORDERS} -> {settings.PROCESSED}")
    with transactional_stage(kafka, "process") as (consumer, producer):
        source = BoundedRead(consumer, settings.ORDERS)
        for batch in source:
            with transaction(producer, consumer, source):
                processed_at = datetime.now(timezone.utc).isoformat()
                for message in batch:
                    result = parse(message.value())
                    if type(result) is Order:
                        valid += 1
                        produce(producer, settings.PROCESSED, message.key(), enrich(result, processed_at))
                    else:
                        reasons[result.reason] += 1
                        dead_letter(producer, message, result.reason, result.detail)
            progress.add(len(batch))
    progress.done()
    invalid = sum(reasons.values())
    return {
        "input": _ranges(settings.ORDERS, source), "read": progress.count, "valid": valid, "invalid": invalid,
        "reasons": dict(reasons), "written": {settings.PROCESSED: valid, settings.DLQ: invalid},
    }


def dead_letter(producer: Producer, message: Message, reason: str, detail: str) -> None:
    """Key and value unchanged; why and where from in the headers."""
    headers = list(message.headers() or []) + [
        ("reason", reason.encode()),
        ("detail", detail.encode()),
        ("source.topic", message.topic().encode()),
        ("source.partition", str(message.partition()).encode()),
        ("source.offset", str(message.offset()).encode()),
    ]
    produce(producer, settings.DLQ, message.key(), message.value(), headers)


def analyze(
    kafka: Kafka, grace_seconds: float = settings.GRACE_SECONDS,
    dedup_horizon_seconds: float = settings.DEDUP_HORIZON_SECONDS,
) -> dict:
    """processed-orders -> 1-minute tumbling windows per product -> product-metrics.

    Duplicates and late orders go to orders-dlq. The changed windows' totals, the state that
    carries them to the next run (analyze-state) and the consumed offsets commit in one
    transaction per batch.
    """
    reasons: Counter[str] = Counter()
    metrics_written = 0
    progress = Progress(f"analyze {settings.PROCESSED} -> {settings.METRICS}")
    with transactional_stage(kafka, "analyze") as (consumer, producer):
        analyzer = restore_analyzer(kafka, Analyzer.create(grace_seconds, dedup_horizon_seconds))
        before = replace(analyzer.ledger)
        stale = analyzer.expire()  # what a run that died before its last step left behind
        source = BoundedRead(consumer, settings.PROCESSED)
        for batch in source:
            with transaction(producer, consumer, source):
                parsed = [parse(message.value()) for message in batch]
                verdicts = iter(analyzer.offer_all([order for order in parsed if type(order) is Order]))
                for message, result in zip(batch, parsed):
                    if type(result) is not Order:
                        reasons[result.reason] += 1
                        dead_letter(producer, message, result.reason, result.detail)
                    elif (why := next(verdicts)) is not None:
                        reasons[why] += 1
                        dead_letter(producer, message, why, f"order {result.order_id} is {why}; not counted")
                windows, state = analyzer.take_changes()
                for key, aggregate in windows:
                    produce(producer, settings.METRICS, key_bytes(key), codec.encode(metric(key, aggregate)))
                for key, value in state:
                    produce(producer, settings.ANALYZE_STATE, key, value)
                metrics_written += len(windows)
            progress.add(len(batch))
        tombstones = stale + analyzer.expire()
        if tombstones:
            with transaction(producer):
                for key, value in tombstones:
                    produce(producer, settings.ANALYZE_STATE, key, value)
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
    log.info(
        "analyze state: %d open (window, product) aggregates, %d order ids remembered, %d counted so far",
        len(analyzer.windows.aggregates), len(analyzer.seen), analyzer.ledger.count,
    )
    return analyzer


def sink(kafka: Kafka, path: Path | None = None) -> dict:
    """product-metrics -> metrics.json, upserted by (window, product); offsets are committed
    only after the file is durably replaced, so a crash in between just re-applies the same."""
    path = path or settings.metrics_path()
    metrics = store.load(path)
    kafka.check()
    progress = Progress(f"sink {settings.METRICS} -> {path}")
    with closing(kafka.consumer(group("sink"))) as consumer:
        source = BoundedRead(consumer, settings.METRICS)
        for batch in source:
            for message in batch:
                try:
                    store.upsert(metrics, codec.decode(message.value() or b"null"))
                except (ValueError, *codec.DecodeError) as exc:
                    raise ValueError(
                        f"{settings.METRICS} partition {message.partition()} offset {message.offset()}: {exc}"
                    ) from None
            progress.add(len(batch))
        if positions := source.positions():
            store.write(path, metrics)
            retrying(consumer.commit, offsets=positions, asynchronous=False)
    progress.done()
    return {
        "input": _ranges(settings.METRICS, source), "read": progress.count, "metrics": len(metrics),
        "order_count": sum(m["order_count"] for m in metrics.values()),
        "total_revenue": str(sum((m["total_revenue"] for m in metrics.values()), Decimal(0))),
        "path": str(path),
    }


def replay(kafka: Kafka, start: datetime, end: datetime, allow_partial: bool = False) -> dict:
    """Rebuild the metrics of the windows starting in [start, end) from processed-orders as Kafka
    retains it, and publish them to product-metrics (the sink then upserts them).

    It counts what the analyze stage counted: the records it has committed, less those it
    dead-lettered (late, duplicate, invalid: orders-dlq names their offsets). Totals replace
    totals downstream, so nothing is counted twice.
    """
    kafka.check()
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
                headers = dict(message.headers() or [])
                if headers.get("source.topic") == settings.PROCESSED.encode():
                    rejected.add((int(headers["source.partition"]), int(headers["source.offset"])))
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
    producer = kafka.producer(transactional_id=group("replay"))
    producer.init_transactions(TIMEOUT)
    with transaction(producer):
        for key, aggregate in sorted(windows.aggregates.items()):
            produce(producer, settings.METRICS, key_bytes(key), codec.encode(metric(key, aggregate)))
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
