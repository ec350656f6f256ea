"""The per-batch steps of process and analyze: one batch of input records in, the records to
produce, the dead letters (with reasons) and the state changes out. Plain Python, no broker:
the stages (``stages``) run them inside one Kafka transaction per batch, bounded or following.

A batch is a list of records as confluent_kafka gives them: anything with ``key()``,
``value()``, ``timestamp()`` (a (type, epoch ms) pair) and ``partition()``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Protocol

import msgspec

from include.pipeline import codec, state_codec, telemetry
from include.pipeline.analyzer import Analyzer
from include.pipeline.orders import Order, enrich, parse
from include.pipeline.reasons import Reason
from include.pipeline.windows import Partial, ledger_header, partial_key_bytes


class Record(Protocol):
    """An input record, as confluent_kafka's ``Message`` is one."""

    def key(self) -> bytes | None:
        """The record's key."""

    def value(self) -> bytes | None:
        """The record's value; None for a tombstone."""

    def timestamp(self) -> tuple[int, int]:
        """(timestamp type, epoch ms); type 0 means none."""

    def partition(self) -> int:
        """The partition of its topic it was read from."""


# gc=False: a batch makes thousands of these, and they hold no cycles.
class Outgoing(msgspec.Struct, gc=False):
    """A record to produce; ``timestamp`` 0 is the produce time."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None
    timestamp: int = 0


class Rejection(msgspec.Struct, gc=False):
    """The input record at ``index`` of the batch goes to the dead-letter topic."""

    index: int
    reason: Reason
    detail: str


class Processed(msgspec.Struct):
    """What process makes of a batch."""

    valid: list[Outgoing]  # for processed-orders, in input order
    rejected: list[Rejection]

    @property
    def records(self) -> list[Outgoing]:
        """For the stage's output topic."""
        return self.valid

    @property
    def state(self) -> list[tuple[bytes, bytes | None]]:
        """process keeps no state."""
        return []


class Analyzed(msgspec.Struct):
    """What analyze makes of a batch."""

    metrics: list[Outgoing]  # for product-metrics: the partials this batch changed, new totals
    state: list[tuple[bytes, bytes | None]]  # for analyze-state: the changelog of the changes
    rejected: list[Rejection]
    counted: int

    @property
    def records(self) -> list[Outgoing]:
        """For the stage's output topic."""
        return self.metrics


def process(batch: list[Record], processed_at: str) -> Processed:
    """Valid orders enriched, keyed by order id (so every copy of an order lands on one partition
    of processed-orders, where one analyze worker sees them all), keeping their record's
    timestamp (the produce time that end-to-end latency starts from); anything else rejected
    with the parser's reason."""
    valid, rejected = [], []
    for index, message in enumerate(batch):
        result = parse(message.value())
        if type(result) is Order:
            key = result.order_id.encode("utf-8", "surrogatepass")
            valid.append(Outgoing(key, enrich(result, processed_at), None, _produced_ms(message)))
        else:
            rejected.append(Rejection(index, result.reason, result.detail))
    return Processed(valid, rejected)


def analyze(analyzers: dict[int, Analyzer], batch: list[Record]) -> Analyzed:
    """Count the batch's orders into their windows, each partition's with its own ``Analyzer``
    (its stream time, its remembered ids: every copy of an order is on one partition), and say
    what changed: each changed window's new partial of that partition, with the produce times of
    the orders newly counted in it (the ``origins`` header) and the partition's ledger after the
    batch (the ``ledger`` header: what a store holding these partials adds up to); and the state
    changelog records. Duplicates and late orders are rejected."""
    positions: dict[int, list[int]] = defaultdict(list)
    for index, message in enumerate(batch):
        positions[message.partition()].append(index)
    out = Analyzed([], [], [], 0)
    for partition, indexes in sorted(positions.items()):
        part = _analyze_partition(analyzers[partition], partition, [batch[i] for i in indexes])
        out.metrics += part.metrics
        out.state += part.state
        out.rejected += [Rejection(indexes[r.index], r.reason, r.detail) for r in part.rejected]
        out.counted += part.counted
    out.rejected.sort(key=lambda r: r.index)
    return out


def _analyze_partition(analyzer: Analyzer, partition: int, records: list[Record]) -> Analyzed:
    parsed = [parse(message.value()) for message in records]
    verdicts = iter(analyzer.offer_all([order for order in parsed if type(order) is Order]))
    rejected = []
    produced: dict[tuple[int, str], list[int]] = defaultdict(list)
    for index, (message, result) in enumerate(zip(records, parsed)):
        if type(result) is not Order:
            rejected.append(Rejection(index, result.reason, result.detail))
        elif (why := next(verdicts)) is not None:
            rejected.append(Rejection(index, why, f"order {result.order_id} is {why}; not counted"))
        else:
            produced[result.window_start, result.product_id].append(_produced_ms(message))
    windows, state = analyzer.take_changes()
    ledger = ledger_header(analyzer.ledger.mark(partition))  # after this batch; one value for all
    metrics = [
        Outgoing(
            partial_key_bytes((*window, partition)),
            codec.encode(Partial(*window, partition, aggregate.count, aggregate.total)),
            [telemetry.origins_header(produced[window]), ledger],
        )
        for window, aggregate in windows
    ]
    counted = sum(len(times) for times in produced.values())
    return Analyzed(metrics, state_codec.scoped(partition, state), rejected, counted)


def _produced_ms(message: Record) -> int:
    kind, ms = message.timestamp()
    return ms if kind and ms > 0 else 0
