"""The four stages. Each is a bounded run over what is new in its input topic and returns its
counts (they become the task's XCom and the run manifest)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from contextlib import closing, contextmanager
from typing import Iterator

from confluent_kafka import Consumer, Message, Producer

from include.pipeline import codec, generator, orders, settings, sink as store
from include.pipeline.kafka_io import (
    TIMEOUT, Kafka, Progress, create_topics as create, next_offsets, produce, read, retrying, transaction,
)
from include.pipeline.windows import TumblingWindows, aggregate_from_state, key_bytes, metric, parse_key, state_record

log = logging.getLogger(__name__)

# A huge or throttled generate run commits in slices, keeping each transaction short.
GENERATE_TXN_RECORDS = 50_000
GENERATE_TXN_SECONDS = 5.0


def group(stage: str) -> str:
    return f"{settings.GROUP_PREFIX}-{stage}"


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
    records = generator.orders(orders, start, end, invalid_ratio, seed)
    sent = 0
    while sent < orders:
        slice_started = time.monotonic()
        with transaction(producer):
            for key, value in records:
                produce(producer, settings.ORDERS, key, value)
                sent += 1
                progress.add(1)
                if rate > 0:
                    _throttle(sent, rate, progress.started)
                if sent % GENERATE_TXN_RECORDS == 0 or time.monotonic() - slice_started > GENERATE_TXN_SECONDS:
                    break
    progress.done()
    return {"generated": sent, "seconds": round(progress.seconds, 3)}


def _throttle(sent: int, rate: float, started: float) -> None:
    ahead = sent / rate - (time.monotonic() - started)
    if ahead > 0:
        time.sleep(ahead)


@contextmanager
def transactional_stage(kafka: Kafka, stage: str) -> Iterator[tuple[Consumer, Producer]]:
    """The consumer and transactional producer of a consume-transform-produce stage. The fixed
    transactional id fences a zombie attempt of the same stage (a killed task's producer)."""
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
        for batch in read(consumer, settings.ORDERS):
            with transaction(producer, consumer, batch):
                processed_at = datetime.now(timezone.utc).isoformat()
                for message in batch:
                    result = orders.parse(message.value())
                    if isinstance(result, orders.Rejected):
                        reasons[result.reason] += 1
                        dead_letter(producer, message, result)
                    else:
                        valid += 1
                        produce(producer, settings.PROCESSED, message.key(), orders.enrich(result, processed_at))
            progress.add(len(batch))
    progress.done()
    return {"read": progress.count, "valid": valid, "invalid": sum(reasons.values()), "reasons": dict(reasons)}


def dead_letter(producer, message: Message, rejected: orders.Rejected) -> None:
    """Key and value unchanged; why and where from in the headers."""
    headers = list(message.headers() or []) + [
        ("reason", rejected.reason.encode()),
        ("detail", rejected.detail.encode()),
        ("source.topic", message.topic().encode()),
        ("source.partition", str(message.partition()).encode()),
        ("source.offset", str(message.offset()).encode()),
    ]
    produce(producer, settings.DLQ, message.key(), message.value(), headers)


def analyze(kafka: Kafka) -> dict:
    """processed-orders -> 1-minute tumbling windows per product -> product-metrics.

    Window totals continue from the analyze-state changelog; the changed windows' new totals,
    their state and the consumed offsets commit in one transaction.
    """
    reasons: Counter[str] = Counter()
    counted = 0
    updated: set = set()
    progress = Progress(f"analyze {settings.PROCESSED} -> {settings.METRICS}")
    with transactional_stage(kafka, "analyze") as (consumer, producer):
        windows = TumblingWindows(load_windows(kafka))
        for batch in read(consumer, settings.PROCESSED):
            with transaction(producer, consumer, batch):
                for message in batch:
                    result = orders.parse(message.value())
                    if isinstance(result, orders.Rejected):
                        reasons[result.reason] += 1
                        dead_letter(producer, message, result)
                    else:
                        counted += 1
                        windows.add(result)
                for key in windows.take_changed():
                    aggregate = windows.aggregates[key]
                    produce(producer, settings.METRICS, key_bytes(key), codec.encode(metric(key, aggregate)))
                    produce(producer, settings.ANALYZE_STATE, key_bytes(key), codec.encode(state_record(aggregate)))
                    updated.add(key)
            progress.add(len(batch))
    progress.done()
    return {
        "read": progress.count, "counted": counted, "invalid": sum(reasons.values()), "reasons": dict(reasons),
        "windows_updated": len(updated), "windows_total": len(windows.aggregates),
    }


def load_windows(kafka: Kafka) -> dict:
    aggregates = {}
    # Reads from the start and never commits: the group id is only a name here.
    with closing(kafka.consumer(group("analyze-state-reader"))) as consumer:
        for batch in read(consumer, settings.ANALYZE_STATE, from_beginning=True):
            for message in batch:
                key = parse_key(message.key())
                if message.value() is None:
                    aggregates.pop(key, None)
                else:
                    aggregates[key] = aggregate_from_state(codec.decode(message.value()))
    log.info("window state: %d (window, product) aggregates", len(aggregates))
    return aggregates


def sink(kafka: Kafka, path: Path | None = None) -> dict:
    """product-metrics -> metrics.json, upserted by (window, product); offsets are committed
    only after the file is durably replaced, so a crash in between just re-applies the same."""
    path = path or settings.metrics_path()
    metrics = store.load(path)
    kafka.check()
    progress = Progress(f"sink {settings.METRICS} -> {path}")
    positions = {}
    with closing(kafka.consumer(group("sink"))) as consumer:
        for batch in read(consumer, settings.METRICS):
            for message in batch:
                try:
                    store.upsert(metrics, codec.decode(message.value() or b"null"))
                except (ValueError, *codec.DecodeError) as exc:
                    raise ValueError(
                        f"{settings.METRICS} partition {message.partition()} offset {message.offset()}: {exc}"
                    ) from None
            positions.update((tp.partition, tp) for tp in next_offsets(batch))
            progress.add(len(batch))
        if positions:
            store.write(path, metrics)
            retrying(consumer.commit, offsets=list(positions.values()), asynchronous=False)
    progress.done()
    return {"read": progress.count, "metrics": len(metrics), "path": str(path)}
