"""Test data the unit tests share: orders as the parser makes them of a producer's JSON, and
metrics rows, with the product names the independent oracle writes out (not read from the
catalogue)."""

from __future__ import annotations

from decimal import Decimal

from include.pipeline.domain import codec, orders
from include.pipeline.domain.windows import Metric
from tests.oracle import PRODUCTS


def order(order_id: str, timestamp: str, amount: str = "10.00", product_id: str = "prod-1") -> orders.Order:
    """A valid order, parsed from the JSON a producer would write."""
    doc = {"order_id": order_id, "user_id": "u", "product_id": product_id, "amount": Decimal(amount),
           "timestamp": timestamp}
    return orders.parse(codec.encode(doc))


def metric(start: int, product: str = "prod-1", count: int = 1, total: str = "10.50") -> Metric:
    """The metrics row of a window starting at ``start`` (epoch seconds)."""
    name = PRODUCTS[product]
    return Metric(start, start + 60, product, name, count, Decimal(total), Decimal(total) / count)
