"""The order contract: validate raw Kafka values, enrich the valid ones.

``parse`` never raises on bad input: it returns a ``Rejected`` with a short reason code (the
``reason`` header of the dead-letter record) and a sentence that names what to fix.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from include.pipeline import codec
from include.pipeline.settings import PRODUCTS, WINDOW_SECONDS

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# JSON parsers read numbers as doubles: one beyond the double range is Infinity, not finite,
# and one below the smallest double is 0. The bounds also keep exact sums short.
MAX_AMOUNT = Decimal(sys.float_info.max)
MIN_AMOUNT = Decimal(5e-324)
# Far above any real order; bounds the work one record can cost.
MAX_ORDER_BYTES = 64 * 1024
REQUIRED = ("order_id", "user_id", "product_id", "amount", "timestamp")


@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    user_id: str
    product_id: str
    amount: Decimal
    timestamp: str
    event_time: datetime  # the timestamp, in UTC

    @property
    def window_start(self) -> int:
        return window_start(self.event_time)

    @property
    def event_us(self) -> int:
        """Event time in epoch microseconds."""
        delta = self.event_time - EPOCH
        return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str
    detail: str


def window_start(event_time: datetime) -> int:
    """Start (epoch seconds) of the tumbling window [start, start + 60) holding event_time."""
    delta = event_time - EPOCH
    seconds = delta.days * 86400 + delta.seconds  # floors, also before 1970
    return seconds - seconds % WINDOW_SECONDS


def parse(value: bytes | None) -> Order | Rejected:
    if value is None:
        return Rejected("tombstone", "the record has no value (null tombstone)")
    if not value:
        return Rejected("empty", "the record value is empty")
    if len(value) > MAX_ORDER_BYTES:
        return Rejected("too_large", f"the value has {len(value)} bytes; an order has at most {MAX_ORDER_BYTES}")
    try:
        doc = codec.decode(value)
    except UnicodeDecodeError as exc:
        return Rejected("bad_utf8", f"the value is not valid UTF-8: {exc}")
    except codec.DecodeError as exc:
        return Rejected("invalid_json", f"the value is not valid JSON: {exc}")
    if not isinstance(doc, dict):
        return Rejected("not_an_object", f"the value is JSON {type(doc).__name__}, not an object")
    return _validate(doc)


def _validate(doc: dict[str, Any]) -> Order | Rejected:
    for field in REQUIRED:
        if field not in doc:
            return Rejected("missing_field", f"{field} is missing")
    for field in ("order_id", "user_id"):
        value = doc.get(field)
        if not isinstance(value, str) or not value:
            return Rejected(f"invalid_{field}", f"{field} must be a non-empty string, got {_show(value)}")

    product_id = doc.get("product_id")
    if not isinstance(product_id, str) or product_id not in PRODUCTS:
        return Rejected(
            "unknown_product", f"product_id must be one of {', '.join(PRODUCTS)}, got {_show(product_id)}"
        )

    amount = doc.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, (int, Decimal)):
        return Rejected("invalid_amount", f"amount must be a JSON number, got {_show(amount)}")
    amount = Decimal(amount)
    if not amount.is_finite() or amount > MAX_AMOUNT:
        return Rejected("invalid_amount", f"amount must be finite, got {_show(doc['amount'])}")
    if amount < MIN_AMOUNT:
        return Rejected("invalid_amount", f"amount must be greater than 0, got {_show(doc['amount'])}")

    timestamp = doc.get("timestamp")
    event_time = parse_timestamp(timestamp)
    if event_time is None:
        return Rejected(
            "invalid_timestamp",
            f"timestamp must be an ISO-8601 date and time string, got {_show(timestamp)}",
        )
    return Order(doc["order_id"], doc["user_id"], product_id, amount, timestamp, event_time)


def parse_timestamp(value: Any) -> datetime | None:
    """ISO-8601 date and time; `Z` or an offset, none meaning UTC. None if it is not one."""
    if not isinstance(value, str) or "T" not in value.upper()[8:] and " " not in value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:  # an offset that pushes it past year 1 or 9999
        return None


def enrich(order: Order, processed_at: str) -> bytes:
    """The processed-orders record: the order's fields plus product_name and processed_at."""
    return codec.encode(
        {
            "order_id": order.order_id,
            "user_id": order.user_id,
            "product_id": order.product_id,
            "product_name": PRODUCTS[order.product_id],
            "amount": order.amount,
            "timestamp": order.timestamp,
            "processed_at": processed_at,
        }
    )


def _show(value: Any, limit: int = 80) -> str:
    text = str(value) if isinstance(value, Decimal) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
