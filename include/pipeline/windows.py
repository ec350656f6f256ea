"""1-minute tumbling windows per product: exact aggregates and the metric records they emit,
with the ``ledger`` header analyze puts on them."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Iterable

import msgspec

from include.pipeline import codec, money
from include.pipeline.orders import Order
from include.pipeline.settings import PRODUCTS, WINDOW_SECONDS

WindowKey = tuple[int, str]  # (window_start, product_id)


@dataclass(slots=True)
class Aggregate:
    """One window's orders of one product: how many, and their exact total."""

    count: int = 0
    total: Decimal = Decimal(0)  # exact, unrounded


def key_bytes(key: WindowKey) -> bytes:
    """The product-metrics key of a (window, product): ``<window_start>:<product_id>``."""
    return f"{key[0]}:{key[1]}".encode()


class TumblingWindows:
    """Window aggregates keyed by (window_start, product_id), remembering which changed and
    what their rounded total was before."""

    def __init__(self, aggregates: dict[WindowKey, Aggregate] | None = None) -> None:
        self.aggregates: dict[WindowKey, Aggregate] = aggregates or {}
        self.changed: dict[WindowKey, Decimal] = {}  # key -> total in cents before the change

    def add_all(self, orders: Iterable[Order]) -> None:
        """Count the orders into their windows, exactly."""
        amounts: dict[WindowKey, list[Decimal]] = {}
        for order in orders:
            amounts.setdefault((order.window_start, order.product_id), []).append(order.amount)
        for key, added in amounts.items():
            aggregate = self.aggregates.get(key)
            if aggregate is None:
                aggregate = self.aggregates[key] = Aggregate()
            if key not in self.changed:
                self.changed[key] = money.to_cents(aggregate.total)
            aggregate.count += len(added)
            aggregate.total = money.total(added, aggregate.total)

    def take_changed(self) -> list[tuple[WindowKey, Decimal]]:
        """The windows changed since the last call, each with its total in cents before."""
        changed, self.changed = sorted(self.changed.items()), {}
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


LEDGER_HEADER = "ledger"


class LedgerMark(msgspec.Struct, frozen=True):
    """The analyze ledger as a product-metrics record carries it (the ``ledger`` header): the
    orders counted, all runs, and their revenue in cents per window, after the analyze batch that
    wrote the record. A store whose rows include that batch's records adds up to it."""

    count: int
    revenue_cents: Decimal


class Ledger(msgspec.Struct):
    """Everything analyze has counted, all runs: what the sink's totals must add up to."""

    count: int = 0
    revenue: Decimal = Decimal(0)  # exact sum of the counted amounts
    revenue_cents: Decimal = Decimal(0)  # sum over windows of each window's total in cents

    def mark(self) -> LedgerMark:
        """What the product-metrics records of a batch carry of it (the ``ledger`` header)."""
        return LedgerMark(self.count, self.revenue_cents)


_ledger_decoder = msgspec.json.Decoder(LedgerMark)


def ledger_header(mark: LedgerMark) -> tuple[str, bytes]:
    """The ``ledger`` header of a product-metrics record."""
    return LEDGER_HEADER, msgspec.json.encode(mark)


def ledger_of(headers: list[tuple[str, bytes | None]] | None) -> LedgerMark | None:
    """The ledger a record's headers carry; None for a record without one (written before the
    header existed, or republished by replay). ValueError says what is wrong with a bad one."""
    for name, value in headers or ():
        if name == LEDGER_HEADER:
            try:
                return _ledger_decoder.decode(value or b"null")
            except msgspec.DecodeError as exc:  # a ValidationError too
                raise ValueError(f"not a ledger header ({exc})") from None
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
