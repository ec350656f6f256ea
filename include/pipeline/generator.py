"""Realistic order events, reproducible from a seed, with a share of deliberately bad ones."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Iterator

from include.pipeline import codec
from include.pipeline.settings import PRODUCTS

# (weight, lowest price, highest price) per product: phones sell most, laptops cost most.
PRICES = {
    "prod-1": (12, Decimal("499.00"), Decimal("2499.00")),
    "prod-2": (30, Decimal("199.00"), Decimal("1299.00")),
    "prod-3": (15, Decimal("129.00"), Decimal("999.00")),
    "prod-4": (18, Decimal("99.00"), Decimal("899.00")),
    "prod-5": (25, Decimal("19.99"), Decimal("189.00")),
}
USERS = 5000

# Each maker turns a valid order (dict) into the raw bytes of a broken one.
INVALID_MAKERS = (
    lambda o, r: b"",
    lambda o, r: b"{not json",
    lambda o, r: b'"just a string"',
    lambda o, r: codec.encode([o]),
    lambda o, r: b'{"order_id": "\xff\xfe"}',
    lambda o, r: codec.encode({**o, "amount": -o["amount"]}),
    lambda o, r: codec.encode({**o, "amount": 0}),
    lambda o, r: codec.encode({**o, "amount": str(o["amount"])}),
    lambda o, r: codec.encode({**o, "product_id": "prod-99"}),
    lambda o, r: codec.encode({k: v for k, v in o.items() if k != r.choice(list(o))}),
    lambda o, r: codec.encode({**o, "user_id": ""}),
    lambda o, r: codec.encode({**o, "timestamp": "yesterday at noon"}),
    lambda o, r: None,  # a tombstone
)


def orders(
    count: int,
    start: datetime,
    end: datetime,
    invalid_ratio: float = 0.0,
    seed: int | str | None = None,
) -> Iterator[tuple[bytes, bytes | None]]:
    """Yield ``count`` (key, value) records with event times spread over [start, end) in order.

    Keys are order ids (user ids for invalid records). Ids are random UUIDs drawn from the
    seeded generator: unique, and the same for the same seed.
    """
    if not 0 <= invalid_ratio <= 1:
        raise ValueError(f"invalid_ratio must be between 0 and 1, got {invalid_ratio}")
    rng = random.Random(seed)
    products = list(PRICES)
    weights = [PRICES[p][0] for p in products]
    span_us = max(int((end - start).total_seconds() * 1_000_000), 1)
    for i in range(count):
        product_id = rng.choices(products, weights)[0]
        _, low, high = PRICES[product_id]
        cents = rng.randint(int(low * 100), int(high * 100))
        user_id = f"user-{int(USERS * rng.betavariate(1, 3)):05d}"  # a few loyal customers
        order_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        offset_us = (i * span_us) // count + rng.randrange(max(span_us // count, 1))
        event_time = datetime.fromtimestamp(start.timestamp() + offset_us / 1e6, timezone.utc)
        order = {
            "order_id": order_id,
            "user_id": user_id,
            "product_id": product_id,
            "amount": Decimal(cents).scaleb(-2),
            "timestamp": event_time.isoformat(timespec="milliseconds"),
        }
        if rng.random() < invalid_ratio:
            yield user_id.encode(), rng.choice(INVALID_MAKERS)(order, rng)
        else:
            yield order_id.encode(), codec.encode(order)
