"""1-minute tumbling windows per product: exact aggregates and the metric records they emit."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable

from include.pipeline import money
from include.pipeline.orders import Order
from include.pipeline.settings import PRODUCTS, WINDOW_SECONDS

WindowKey = tuple[int, str]  # (window_start, product_id)


@dataclass(slots=True)
class Aggregate:
    count: int = 0
    total: Decimal = Decimal(0)  # exact, unrounded


def key_bytes(key: WindowKey) -> bytes:
    return f"{key[0]}:{key[1]}".encode()


class TumblingWindows:
    """Window aggregates keyed by (window_start, product_id), remembering which changed and
    what their rounded total was before."""

    def __init__(self, aggregates: dict[WindowKey, Aggregate] | None = None) -> None:
        self.aggregates: dict[WindowKey, Aggregate] = aggregates or {}
        self.changed: dict[WindowKey, Decimal] = {}  # key -> total in cents before the change

    def add_all(self, orders: Iterable[Order]) -> None:
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
        changed, self.changed = sorted(self.changed.items()), {}
        return changed


def metric(key: WindowKey, aggregate: Aggregate) -> dict[str, Any]:
    """The product-metrics / metrics.json record of one (window, product)."""
    start, product_id = key
    return {
        "window_start": start,
        "window_end": start + WINDOW_SECONDS,
        "product_id": product_id,
        "product_name": PRODUCTS[product_id],
        "order_count": aggregate.count,
        "total_revenue": money.to_cents(aggregate.total),
        "avg_order_value": money.average_to_cents(aggregate.total, aggregate.count),
    }


def state_record(aggregate: Aggregate) -> dict[str, Any]:
    """What the state changelog keeps: the exact total as a string, never rounded."""
    return {"count": aggregate.count, "total": str(aggregate.total)}


def aggregate_from_state(doc: dict[str, Any]) -> Aggregate:
    return Aggregate(int(doc["count"]), Decimal(doc["total"]))

