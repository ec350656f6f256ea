"""The per-batch steps of process and analyze: one batch of input records in, the records to
produce, the dead letters (with reasons) and the state changes out. Plain Python, no broker:
the stages (``stages``) run them inside one Kafka transaction per batch, bounded or following.

A batch is a list of records as confluent_kafka gives them: anything with ``key()``,
``value()`` and ``timestamp()`` (a (type, epoch ms) pair).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Protocol

import msgspec

from include.pipeline import codec, telemetry
from include.pipeline.analyzer import Analyzer
from include.pipeline.orders import Order, enrich, parse
from include.pipeline.reasons import Reason
from include.pipeline.windows import key_bytes, ledger_header, metric


class Record(Protocol):
    """An input record, as confluent_kafka's ``Message`` is one."""

    def key(self) -> bytes | None:
        """The record's key."""

    def value(self) -> bytes | None:
        """The record's value; None for a tombstone."""

    def timestamp(self) -> tuple[int, int]:
        """(timestamp type, epoch ms); type 0 means none."""


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

    metrics: list[Outgoing]  # for product-metrics: the windows this batch changed, new totals
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


def analyze(analyzer: Analyzer, batch: list[Record]) -> Analyzed:
    """Count the batch's orders into their windows (``Analyzer``: duplicates and late orders are
    rejected) and say what changed: each changed window's new totals, with the produce times of
    the orders newly counted in it (the ``origins`` header) and the ledger after the batch (the
    ``ledger`` header: what a store holding these totals adds up to); and the state changelog
    records."""
    parsed = [parse(message.value()) for message in batch]
    verdicts = iter(analyzer.offer_all([order for order in parsed if type(order) is Order]))
    rejected = []
    produced: dict[tuple[int, str], list[int]] = defaultdict(list)
    for index, (message, result) in enumerate(zip(batch, parsed)):
        if type(result) is not Order:
            rejected.append(Rejection(index, result.reason, result.detail))
        elif (why := next(verdicts)) is not None:
            rejected.append(Rejection(index, why, f"order {result.order_id} is {why}; not counted"))
        else:
            produced[result.window_start, result.product_id].append(_produced_ms(message))
    windows, state = analyzer.take_changes()
    ledger = ledger_header(analyzer.ledger.mark())  # after this batch; one value for all its records
    metrics = [
        Outgoing(key_bytes(key), codec.encode(metric(key, aggregate)), [
            telemetry.origins_header(produced[key]), ledger,
        ])
        for key, aggregate in windows
    ]
    return Analyzed(metrics, state, rejected, sum(len(times) for times in produced.values()))


def _produced_ms(message: Record) -> int:
    kind, ms = message.timestamp()
    return ms if kind and ms > 0 else 0
