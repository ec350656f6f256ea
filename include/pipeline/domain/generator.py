"""Realistic order events, reproducible from a seed, with a share of deliberately bad ones."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from decimal import Decimal
from hashlib import sha256
from typing import Iterator

import numpy as np

from include.pipeline.domain import codec

# (weight, lowest price, highest price in cents) per product: phones sell most, laptops cost most.
PRICES = {
    "prod-1": (12, 49900, 249900),
    "prod-2": (30, 19900, 129900),
    "prod-3": (15, 12900, 99900),
    "prod-4": (18, 9900, 89900),
    "prod-5": (25, 1999, 18900),
}
USERS = 5000
CHUNK = 10_000  # records drawn and formatted at a time
HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
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
    count: int, start: datetime, end: datetime, invalid_ratio: float = 0.0, seed: int | str | None = None,
) -> Iterator[tuple[bytes, bytes | None]]:
    """Yield ``count`` (key, value) records with event times spread over [start, end) in order.

    Keys are order ids (user ids for invalid records). Ids are random UUIDs drawn from the
    seeded generator: unique, and the same for the same seed.
    """
    for chunk in chunks(count, start, end, invalid_ratio, seed):
        yield from chunk


def chunks(
    count: int, start: datetime, end: datetime, invalid_ratio: float = 0.0, seed: int | str | None = None,
    size: int = CHUNK,
) -> Iterator[list[tuple[bytes, bytes | None]]]:
    """orders(), a list of up to ``size`` records at a time (the same records whatever the size).
    The random draws are numpy arrays and valid values are formatted directly (every field is
    generated here, nothing needs escaping): this is the hot path of the generate stage."""
    if not 0 <= invalid_ratio <= 1:
        raise ValueError(f"invalid_ratio must be between 0 and 1, got {invalid_ratio}")
    rng = np.random.default_rng(_seed(seed))
    broken = random.Random(seed)  # shapes the deliberately invalid records
    products = list(PRICES)
    weights = np.array([PRICES[p][0] for p in products], dtype=float)
    low = np.array([PRICES[p][1] for p in products])
    high = np.array([PRICES[p][2] for p in products])
    users = [f"user-{u:05d}" for u in range(USERS)]
    start_us, end_us = _epoch_us(start), _epoch_us(end)
    step_us = max(end_us - start_us, 1) / max(count, 1)
    for first in range(0, count, CHUNK):
        n = min(CHUNK, count - first)
        product = rng.choice(len(products), n, p=weights / weights.sum())
        cents = (low[product] + rng.random(n) * (high[product] - low[product] + 1)).astype(np.int64).tolist()
        # Beta(1, 3): loyal few
        user = (USERS * (1.0 - (1.0 - rng.random(n)) ** (1 / 3))).astype(np.int64).tolist()
        at_us = start_us + (np.arange(first, first + n) * step_us + rng.random(n) * step_us).astype(np.int64)
        timestamps = np.datetime_as_string(
            np.minimum(at_us, end_us - 1).astype("datetime64[us]"), unit="ms"
        ).tolist()
        invalid = np.flatnonzero(rng.random(n) < invalid_ratio).tolist() if invalid_ratio else []
        order_ids = _uuids(rng, n)
        user_ids = [users[u] for u in user]
        product_ids = [products[p] for p in product.tolist()]
        chunk = list(zip([order_id.encode() for order_id in order_ids], [
            f'{{"order_id":"{o}","user_id":"{u}","product_id":"{p}","amount":{c // 100}.{c % 100:02d},'
            f'"timestamp":"{t}+00:00"}}'.encode()
            for o, u, p, c, t in zip(order_ids, user_ids, product_ids, cents, timestamps)
        ]))
        for i in invalid:
            order = {"order_id": order_ids[i], "user_id": user_ids[i], "product_id": product_ids[i],
                     "amount": Decimal(cents[i]).scaleb(-2), "timestamp": timestamps[i] + "+00:00"}
            chunk[i] = (user_ids[i].encode(), broken.choice(INVALID_MAKERS)(order, broken))
        for at in range(0, n, size):
            yield chunk[at:at + size]


def _uuids(rng: np.random.Generator, n: int) -> list[str]:
    """n random UUIDs (version 4), formatted a chunk at a time."""
    raw = np.frombuffer(rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = raw[:, 6] & 0x0F | 0x40  # version 4
    raw[:, 8] = raw[:, 8] & 0x3F | 0x80  # RFC 4122 variant
    digits = np.empty((n, 32), dtype=np.uint8)
    digits[:, 0::2], digits[:, 1::2] = HEX[raw >> 4], HEX[raw & 0x0F]
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    for (a, b), at in zip(((0, 8), (8, 12), (12, 16), (16, 20), (20, 32)), (0, 9, 14, 19, 24)):
        text[:, at:at + b - a] = digits[:, a:b]
    joined = text.tobytes().decode("ascii")
    return [joined[36 * i: 36 * i + 36] for i in range(n)]


def _seed(seed: int | str | None) -> int | None:
    # numpy takes integers only: a string seed (a run id) is hashed to one, stably.
    return (
        seed if seed is None or isinstance(seed, int)
        else int.from_bytes(sha256(seed.encode()).digest()[:16], "big")
    )


def _epoch_us(moment: datetime) -> int:
    # Through isoformat: Airflow hands in pendulum datetimes, whose differences are not timedeltas.
    delta = datetime.fromisoformat(moment.isoformat()) - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
