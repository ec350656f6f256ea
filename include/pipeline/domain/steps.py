"""The per-batch steps of process and analyze: one batch of input records in, the records to
produce, the dead letters (with reasons) and the state changes out. Plain Python, no broker:
the stages (``stages``) run them inside one Kafka transaction per batch, bounded or following.

A batch is a list of records as confluent_kafka gives them: anything with ``key()``,
``value()``, ``timestamp()`` (a (type, epoch ms) pair) and ``partition()``.
"""

from __future__ import annotations

from itertools import chain, repeat
from operator import methodcaller
from typing import Callable

import msgspec
import numpy as np

from include.pipeline.domain import codec, order_columns, state_codec, telemetry
from include.pipeline.domain.analyzer import COUNTED, VERDICTS, Analyzer
from include.pipeline.domain.catalogue import PRODUCTS
from include.pipeline.domain.order_columns import OrderColumns, window_code
from include.pipeline.domain.orders import Rejected
from include.pipeline.domain.reasons import Reason
from include.pipeline.domain.record import Record
from include.pipeline.domain.windows import Partial, ledger_header, partial_key_bytes

# A batch's record values -> its valid orders, and (position, why) for the others.
Decode = Callable[[list[bytes | None]], tuple[OrderColumns, list[tuple[int, Rejected]]]]

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


def process(batch: list[Record], processed_at: str, decode: Decode = order_columns.decode) -> Processed:
    """Valid orders enriched, keyed by order id (so every copy of an order lands on one partition
    of processed-orders, where one analyze worker sees them all), keeping their record's
    timestamp (the produce time that end-to-end latency starts from); anything else rejected
    with the parser's reason. (``decode``: the bulk path, or ``order_columns.decode_each``.)"""
    values = [message.value() for message in batch]
    orders, rejected = decode(values)
    wires = orders.wires
    for wire in wires:
        wire.product_name = PRODUCTS[wire.product_id]
        wire.processed_at = processed_at
    records = codec.encode_lines(wires).split(b"\n")[:-1]  # JSON escapes a newline in a string
    produced = _produced_ms(batch)[orders.index].tolist()
    valid = list(map(Outgoing, orders.order_ids, records, repeat(None), produced))
    return Processed(valid, [Rejection(index, why.reason, why.detail) for index, why in rejected])


def analyze(
    analyzers: dict[int, Analyzer], batch: list[Record], decode: Decode = order_columns.decode,
) -> Analyzed:
    """Count the batch's orders into their windows, each partition's with its own ``Analyzer``
    (its stream time, its remembered ids: every copy of an order is on one partition), and say
    what changed: each changed window's new partial of that partition, with the produce times of
    the orders newly counted in it (the ``origins`` header) and the partition's ledger after the
    batch (the ``ledger`` header: what a store holding these partials adds up to); and the state
    changelog records. Duplicates and late orders are rejected."""
    orders, invalid = decode([message.value() for message in batch])
    orders.wires = []  # counting needs the columns only: its take()s then copy no wires
    partitions = np.fromiter(map(methodcaller("partition"), batch), np.int64, len(batch))
    produced = _produced_ms(batch)
    out = Analyzed([], [], [Rejection(index, why.reason, why.detail) for index, why in invalid], 0)
    of_row = partitions[orders.index]
    for partition in np.unique(partitions).tolist():
        part = orders.take(np.flatnonzero(of_row == partition))
        analyzer = analyzers[partition]
        verdicts = analyzer.offer_batch(part)
        for row in np.flatnonzero(verdicts != COUNTED).tolist():
            why = VERDICTS[verdicts[row]]
            order_id = part.order_ids[row].decode("utf-8", "surrogatepass")
            detail = f"order {order_id} is {why}; not counted"
            out.rejected.append(Rejection(int(part.index[row]), why, detail))
        counted = verdicts == COUNTED
        origins = telemetry.origins_headers(part.window_codes[counted], produced[part.index[counted]])
        windows, state = analyzer.take_changes()
        ledger = ledger_header(analyzer.ledger.mark(partition))  # after this batch; one value for all
        out.metrics += [
            Outgoing(
                partial_key_bytes((*window, partition)),
                codec.encode(Partial(*window, partition, aggregate.count, aggregate.total)),
                [origins.get(window_code(window), telemetry.NO_ORIGINS), ledger],
            )
            for window, aggregate in windows
        ]
        out.state += state_codec.scoped(partition, state)
        out.counted += int(counted.sum())
    out.rejected.sort(key=lambda r: r.index)
    return out


def _produced_ms(batch: list[Record]) -> np.ndarray:
    """Each record's produce time in epoch ms; 0 for one without a usable timestamp."""
    stamps = np.fromiter(chain.from_iterable(map(methodcaller("timestamp"), batch)), np.int64, 2 * len(batch))
    kind, ms = stamps[0::2], stamps[1::2]
    return np.where((kind != 0) & (ms > 0), ms, 0)
