"""1-minute tumbling windows per product: exact aggregates; the partials analyze publishes of
them per partition (product-metrics records) with their ``ledger`` header; and the metrics a
window's partials add up to (a store row, a metrics.json line)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Iterable

import msgspec
import numpy as np

from include.pipeline.domain import codec, money
from include.pipeline.domain.catalogue import PRODUCTS, WINDOW_SECONDS
from include.pipeline.domain.order_columns import OrderColumns, window_key
from include.pipeline.domain.orders import Order

WindowKey = tuple[int, str]  # (window_start, product_id)


@dataclass(slots=True)
class Aggregate:
    """One window's orders of one product: how many, and their exact total."""

    count: int = 0
    total: Decimal = Decimal(0)  # exact, unrounded


class TumblingWindows:
    """Window aggregates keyed by (window_start, product_id), remembering which changed."""

    def __init__(self, aggregates: dict[WindowKey, Aggregate] | None = None) -> None:
        self.aggregates: dict[WindowKey, Aggregate] = aggregates or {}
        self.changed: set[WindowKey] = set()

    def add(self, orders: OrderColumns) -> None:
        """Count the orders into their windows, exactly."""
        if not len(orders):
            return
        codes, groups = np.unique(orders.window_codes, return_inverse=True)
        counts = np.bincount(groups, minlength=len(codes)).tolist()
        totals = orders.totals(groups, len(codes))
        for code, count, total in zip(codes.tolist(), counts, totals):
            key = window_key(code)
            aggregate = self.aggregates.get(key)
            if aggregate is None:
                aggregate = self.aggregates[key] = Aggregate()
            self.changed.add(key)
            aggregate.count += count
            aggregate.total = money.total([total], aggregate.total)

    def add_all(self, orders: list[Order]) -> None:
        """add() of orders the per-record parser made."""
        self.add(OrderColumns.of(orders))

    def take_changed(self) -> list[WindowKey]:
        """The windows changed since the last call, in key order."""
        changed, self.changed = sorted(self.changed), set()
        return changed


class Metric(msgspec.Struct, frozen=True):
    """The metrics of one (window, product): a product-metrics record, a metrics.json line and
    a row of the metrics store. Money in cents, exact."""

    window_start: int
    window_end: int
    product_id: str
    product_name: str
    order_count: int
    total_revenue: Decimal
    avg_order_value: Decimal

    @property
    def key(self) -> WindowKey:
        """(window_start, product_id)."""
        return self.window_start, self.product_id


_metric_decoder = msgspec.json.Decoder(Metric)


def decode_metric(raw: bytes | None) -> Metric:
    """A product-metrics record or metrics.json line; ValueError says what is wrong with it."""
    try:
        record = _metric_decoder.decode(raw or b"null")
    except (msgspec.ValidationError, *codec.DecodeError) as exc:
        raise ValueError(f"not a metrics record ({exc})") from None
    for name in ("total_revenue", "avg_order_value"):
        value = getattr(record, name)
        if not value.is_finite() or value < 0 or value != money.to_cents(value):
            raise ValueError(
                f"not a metrics record ({name} must be a non-negative amount in cents, got {value})"
            )
    # One spelling of each amount (21.50, not 21.5), whatever wrote it.
    total, average = money.to_cents(record.total_revenue), money.to_cents(record.avg_order_value)
    return msgspec.structs.replace(record, total_revenue=total, avg_order_value=average)


LEGACY = -1  # the partition of what analyze counted before it kept its state per partition
PartialKey = tuple[int, str, int]  # (window_start, product_id, partition)


class Partial(msgspec.Struct, frozen=True):
    """A product-metrics record: what analyze counted of one (window, product) from one partition
    of processed-orders (``LEGACY``: all of them, before analyze kept its state per partition):
    the orders and their exact total. A window's metrics add up its partials (``combined``), so
    they are the same however many workers counted them."""

    window_start: int
    product_id: str
    partition: int
    order_count: int
    total: Decimal  # exact, unrounded

    @property
    def window(self) -> WindowKey:
        """(window_start, product_id)."""
        return self.window_start, self.product_id

    @property
    def key(self) -> PartialKey:
        """(window_start, product_id, partition): the newest record per key holds its totals."""
        return self.window_start, self.product_id, self.partition


def partial_key_bytes(key: PartialKey) -> bytes:
    """The product-metrics key of a partial: ``<window_start>:<product_id>@<partition>``."""
    return f"{key[0]}:{key[1]}@{key[2]}".encode()


_partial_decoder = msgspec.json.Decoder(Partial)


def decode_partial(raw: bytes | None) -> Partial:
    """A product-metrics record; one written before partials (a ``Metric``, its total in cents)
    is the ``LEGACY`` partial of its window. ValueError says what is wrong with it."""
    try:
        record = _partial_decoder.decode(raw or b"null")
    except (msgspec.ValidationError, *codec.DecodeError) as exc:
        try:
            old = decode_metric(raw)
        except ValueError:
            raise ValueError(f"not a metrics record ({exc})") from None
        return Partial(old.window_start, old.product_id, LEGACY, old.order_count, old.total_revenue)
    if record.product_id not in PRODUCTS or record.partition < LEGACY or record.order_count < 0:
        raise ValueError(f"not a metrics record (an unknown product, partition or count: {record})")
    if not record.total.is_finite() or record.total < 0:
        raise ValueError(f"not a metrics record (total must be a non-negative amount, got {record.total})")
    return record


def combined(window: WindowKey, partials: Iterable[Partial]) -> Metric:
    """The metrics of a window from all its partials, exactly: summed, then rounded once."""
    parts = list(partials)
    count = sum(part.order_count for part in parts)
    return metric(window, Aggregate(count, money.total(part.total for part in parts)))


LEDGER_HEADER = "ledger"


class LedgerMark(msgspec.Struct, frozen=True):
    """The ledger of one partition as a product-metrics record carries it (the ``ledger``
    header): the orders analyze had counted from that partition, all runs, and their exact
    revenue, after the batch that wrote the record. A store whose partials include that batch's
    records adds up to the newest mark of each partition."""

    count: int
    revenue: Decimal = Decimal(0)  # exact
    partition: int = LEGACY


class _LedgerWire(msgspec.Struct):
    # A header written before partials has revenue_cents (the sum of its windows' rounded totals,
    # which is what the store's rows of then add up to) and no partition.
    count: int
    revenue: Decimal | None = None
    revenue_cents: Decimal | None = None
    partition: int = LEGACY


class Ledger(msgspec.Struct):
    """Everything analyze has counted from one partition, all runs."""

    count: int = 0
    revenue: Decimal = Decimal(0)  # exact sum of the counted amounts

    def mark(self, partition: int) -> LedgerMark:
        """What the product-metrics records of a batch carry of it (the ``ledger`` header)."""
        return LedgerMark(self.count, self.revenue, partition)

    def plus(self, other: Ledger) -> Ledger:
        """The ledger of both (two partitions' counts, as one worker's or one run's)."""
        return Ledger(self.count + other.count, money.total([other.revenue], self.revenue))


_ledger_decoder = msgspec.json.Decoder(_LedgerWire)


def ledger_header(mark: LedgerMark) -> tuple[str, bytes]:
    """The ``ledger`` header of a product-metrics record."""
    return LEDGER_HEADER, msgspec.json.encode(mark)


def ledger_of(headers: list[tuple[str, bytes | None]] | None) -> LedgerMark | None:
    """The ledger a record's headers carry; None for a record without one (written before the
    header existed, or republished by replay). ValueError says what is wrong with a bad one."""
    for name, value in headers or ():
        if name == LEDGER_HEADER:
            try:
                wire = _ledger_decoder.decode(value or b"null")
            except msgspec.DecodeError as exc:  # a ValidationError too
                raise ValueError(f"not a ledger header ({exc})") from None
            revenue = wire.revenue if wire.revenue is not None else wire.revenue_cents
            if revenue is None:
                raise ValueError("not a ledger header (no revenue)")
            return LedgerMark(wire.count, revenue, wire.partition)
    return None


def metric(key: WindowKey, aggregate: Aggregate) -> Metric:
    """The metrics of one (window, product) from its exact aggregate."""
    start, product_id = key
    return Metric(
        window_start=start,
        window_end=start + WINDOW_SECONDS,
        product_id=product_id,
        product_name=PRODUCTS[product_id],
        order_count=aggregate.count,
        total_revenue=money.to_cents(aggregate.total),
        avg_order_value=money.average_to_cents(aggregate.total, aggregate.count),
    )
