"""generate: realistic orders to `orders`, bounded or at a rate, in transactions."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

from confluent_kafka import Producer

from include.pipeline import settings
from include.pipeline.domain import (
    generator,
)
from include.pipeline.kafka_io import access
from include.pipeline.kafka_io.client import Kafka
from include.pipeline.kafka_io.errors import OUTAGE
from include.pipeline.kafka_io.reading import Follow
from include.pipeline.kafka_io.writing import Transactions, WrittenEnds, produce_all
from include.pipeline.metrics import counting
from include.pipeline.run.results import (
    GenerateResult,
)
from include.pipeline.stages import shutdown
from include.pipeline.stages.producers import transactions
from include.pipeline.stages.progress import Progress
from include.pipeline.topology import GENERATE

log = logging.getLogger(__name__)

# A huge or throttled generate run commits in slices, keeping each transaction short.
GENERATE_TXN_RECORDS = 50_000
GENERATE_TXN_SECONDS = 5.0


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
    counting.stage_started(GENERATE.name, OUTAGE.seconds)
    access.ready(kafka, [GENERATE.name])
    txns = transactions(kafka, GENERATE, follow is not None)
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
        _committed(sum(map(len, sent)), slice_started)


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
            _committed(due, tick)
            progress.add(due)
            follow.committed(GENERATE.name, 0, due)
            last = now
        time.sleep(max(0.0, follow.interval - (time.monotonic() - tick)))


def _committed(orders: int, started: float) -> None:
    counting.batch(GENERATE.name, time.monotonic() - started, written=(settings.ORDERS, orders))


def _throttle(sent: int, rate: float, started: float) -> None:
    ahead = sent / rate - (time.monotonic() - started)
    if ahead > 0:
        time.sleep(ahead)


def _send_orders(producer: Producer, chunks: list[list[tuple[bytes, bytes]]], ends: WrittenEnds) -> None:
    for chunk in chunks:
        produce_all(producer, settings.ORDERS, chunk, ends)
