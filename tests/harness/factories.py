"""Test data: an order's JSON as a producer writes it (``order_value``, the one order builder), the
order the parser makes of it (``order``), a metrics row (``metric``) with the product names the
independent oracle writes out (not read from the catalogue), and the zoo of invalid input."""

from __future__ import annotations

import json
from decimal import Decimal

from include.pipeline.domain import orders
from include.pipeline.domain.windows import Metric
from tests.oracle import PRODUCTS


def order_value(
    order_id="o-1", product_id="prod-1", amount="10.00", timestamp="2026-01-05T10:00:30Z", *,
    user_id="user-1", **fields,
) -> bytes:
    """An order's JSON bytes as a producer writes them: compact, UTF-8, its fields in the order
    order_id, user_id, product_id, amount, timestamp, then ``fields`` (extra ones) as given.

    ``amount``, when a str, is the JSON text itself, written exactly as given: "0.10" stays 0.10,
    "1e400" is a number no double holds, and an amount that is a JSON string is the text with its
    quotes, '"19.99"'. Every other value (``amount`` when not a str) is JSON-encoded: a str is a
    JSON string, a Decimal its exact number, None null. A field given as ``...`` is left out."""
    doc = {"order_id": order_id, "user_id": user_id, "product_id": product_id, "amount": amount,
           "timestamp": timestamp, **fields}
    members = [
        f"{_json(name)}:{value if name == 'amount' and isinstance(value, str) else _json(value)}"
        for name, value in doc.items() if value is not ...
    ]
    return ("{" + ",".join(members) + "}").encode()


def _json(value) -> str:
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def order(*args, **fields) -> orders.Order | orders.Rejected:
    """The order (or rejection) the parser makes of ``order_value(*args, **fields)``."""
    return orders.parse(order_value(*args, **fields))


def metric(start: int, product: str = "prod-1", count: int = 1, total: str = "10.50") -> Metric:
    """The metrics row of a window starting at ``start`` (epoch seconds)."""
    name = PRODUCTS[product]
    return Metric(start, start + 60, product, name, count, Decimal(total), Decimal(total) / count)


# Bad input of every kind, hardened cases included: (key, value, reason).
ZOO = [
    (b"z-tombstone", None, "tombstone"),
    (b"z-empty", b"", "empty"),
    (b"z-utf8", b'{"order_id": "\xff\xfe"}', "bad_utf8"),
    (b"z-binary", bytes(range(256)) * 4, "invalid_json"),
    (b"z-text", b"not json at all", "invalid_json"),
    (b"z-nested", b"[" * 50_000 + b"]" * 50_000, "too_large"),
    (b"z-nested-small", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "invalid_json"),
    (b"z-oversized", b'{"order_id": "' + b"x" * 900_000 + b'"}', "too_large"),
    (b"z-array", b"[1, 2]", "not_an_object"),
    (b"z-huge-int", order_value("z1", "prod-1", "9" * 5000, "2026-01-05T10:00:00Z"), "invalid_json"),
    (b"z-huge-exp", order_value("z2", "prod-1", "1e999999999", "2026-01-05T10:00:00Z"), "invalid_amount"),
    (b"z-tiny-exp", order_value("z3", "prod-1", "1e-999999999", "2026-01-05T10:00:00Z"), "invalid_amount"),
    (b"z-string-amount", order_value("z4", "prod-1", '"12.50"', "2026-01-05T10:00:00Z"), "invalid_amount"),
    (b"z-nan", b'{"order_id": "z5", "amount": NaN}', "invalid_json"),
    (b"z-product", order_value("z6", "prod-9", "1.00", "2026-01-05T10:00:00Z"), "unknown_product"),
    (b"z-date", order_value("z7", "prod-1", "1.00", "2026-01-05"), "invalid_timestamp"),
    (b"z-missing",
     b'{"order_id": "z8", "product_id": "prod-1", "amount": 1, "timestamp": "2026-01-05T10:00:00Z"}',
     "missing_field"),
]
