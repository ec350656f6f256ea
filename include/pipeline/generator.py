"""Realistic order events, reproducible from a seed, with a share of deliberately bad ones."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Iterator

from include.pipeline import codec
from include.pipeline.settings import PRODUCTS

# (weight, lowest price, highest price in cents) per product: phones sell most, laptops cost most.
PRICES = {
    "prod-1": (12, 49900, 249900),
    "prod-2": (30, 19900, 129900),
    "prod-3": (15, 12900, 99900),
    "prod-4": (18, 9900, 89900),
    "prod-5": (25, 1999, 18900),
}
USERS = 5000
CHUNK = 10_000  # ids and products are drawn a chunk at a time
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

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
    lambda o, r: codec.encode(dict(r.sample(list(o.items()), len(o) - 1))),  # one field missing
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
    seeded generator: unique, and the same for the same seed. Valid records are formatted
    directly (every field is generated here, nothing needs escaping): this is the hot path.
    """
    if not 0 <= invalid_ratio <= 1:
        raise ValueError(f"invalid_ratio must be between 0 and 1, got {invalid_ratio}")
    rng = random.Random(seed)
    uniform = rng.random
    products = list(PRICES)
    weights = [PRICES[p][0] for p in products]
    start_us, end_us = _epoch_us(start), _epoch_us(end)
    span_us = max(end_us - start_us, 1)
    jitter_us = max(span_us // max(count, 1), 1)
    minute_prefixes: dict[int, str] = {}
    for chunk_start in range(0, count, CHUNK):
        size = min(CHUNK, count - chunk_start)
        chunk_products = rng.choices(products, weights, k=size)
        ids = rng.randbytes(16 * size).hex()
        for j in range(size):
            product_id = chunk_products[j]
            _, low, high = PRICES[product_id]
            cents = low + int(uniform() * (high - low + 1))
            user_id = f"user-{int(USERS * (1.0 - (1.0 - uniform()) ** (1 / 3))):05d}"  # Beta(1, 3): loyal few
            h = ids[32 * j: 32 * j + 32]
            order_id = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"  # UUID v4
            at_us = start_us + ((chunk_start + j) * span_us) // count + int(uniform() * jitter_us)
            minute, us = divmod(at_us, 60_000_000)
            prefix = minute_prefixes.get(minute)
            if prefix is None:
                prefix = minute_prefixes[minute] = (EPOCH + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:")
            timestamp = f"{prefix}{us // 1_000_000:02d}.{us // 1000 % 1000:03d}+00:00"
            amount = f"{cents // 100}.{cents % 100:02d}"
            if invalid_ratio and uniform() < invalid_ratio:
                order = {"order_id": order_id, "user_id": user_id, "product_id": product_id,
                         "amount": Decimal(amount), "timestamp": timestamp}
                yield user_id.encode(), rng.choice(INVALID_MAKERS)(order, rng)
            else:
                yield order_id.encode(), (
                    f'{{"order_id":"{order_id}","user_id":"{user_id}","product_id":"{product_id}",'
                    f'"amount":{amount},"timestamp":"{timestamp}"}}'
                ).encode()


def _epoch_us(moment: datetime) -> int:
    # Through isoformat: Airflow hands in pendulum datetimes, whose differences are not timedeltas.
    delta = datetime.fromisoformat(moment.isoformat()) - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
