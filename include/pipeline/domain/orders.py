"""The order contract: validate raw Kafka values, enrich the valid ones.

``parse`` never raises on bad input: it returns a ``Rejected`` with a reason code
(``reasons.Reason``: the ``reason`` header of the dead-letter record) and a sentence that names
what to fix.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any

import msgspec

from include.pipeline.domain import codec, timestamps
from include.pipeline.domain.catalogue import PRODUCTS, WINDOW_SECONDS
from include.pipeline.domain.reasons import Reason

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# JSON parsers read numbers as doubles: one beyond the double range is Infinity, not finite,
# and one below the smallest double is 0. The bounds also keep exact sums short.
MAX_AMOUNT = Decimal(sys.float_info.max)
MIN_AMOUNT = Decimal(5e-324)
# Far above any real order; bounds the work one record can cost.
MAX_ORDER_BYTES = 64 * 1024
REQUIRED = ("order_id", "user_id", "product_id", "amount", "timestamp")
WINDOW_US = WINDOW_SECONDS * 1_000_000
MICROSECOND = timedelta(microseconds=1)


class Order(msgspec.Struct, frozen=True):
    """An order that keeps the contract, as ``parse`` reads it from a record's value."""

    order_id: str
    user_id: str
    product_id: str
    amount: Decimal
    timestamp: str
    event_us: int  # the timestamp in epoch microseconds (UTC)

    @property
    def event_time(self) -> datetime:
        """When the order happened, in UTC."""
        return EPOCH + timedelta(microseconds=self.event_us)

    @property
    def window_start(self) -> int:
        """Start (epoch seconds) of the tumbling window [start, start + 60) holding the order."""
        return self.event_us // WINDOW_US * WINDOW_SECONDS  # floors, also before 1970


class Rejected(msgspec.Struct, frozen=True):
    """A value that breaks the contract: its reason code, and a sentence that names what to fix."""

    reason: Reason
    detail: str


NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class Wire(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, gc=False):
    """The common case, type-checked in C: the contract's fields, plus the two that process adds,
    and nothing else. Any other value takes the slow path, which says what is wrong with it.
    Its fields are in the order of the processed-orders record, which it also is (``enrich``)."""

    order_id: NonEmpty
    user_id: NonEmpty
    product_id: str
    product_name: Any = None
    amount: msgspec.Raw  # decoded as the slow path does, so both agree on every number
    timestamp: str
    processed_at: Any = None


wire_decoder = msgspec.json.Decoder(Wire)


def parse(value: bytes | None) -> Order | Rejected:
    """The order in a record's value, or why there is none; it never raises on bad input."""
    if value is None:
        return Rejected(Reason.TOMBSTONE, "the record has no value (null tombstone)")
    if not value:
        return Rejected(Reason.EMPTY, "the record value is empty")
    if len(value) > MAX_ORDER_BYTES:
        return Rejected(
            Reason.TOO_LARGE, f"the value has {len(value)} bytes; an order has at most {MAX_ORDER_BYTES}",
        )
    try:
        wire = wire_decoder.decode(value)
        amount = codec.decode(wire.amount)
    except codec.DecodeError:
        return _parse_slowly(value)
    return _order(wire.order_id, wire.user_id, wire.product_id, amount, wire.timestamp)


def _parse_slowly(value: bytes) -> Order | Rejected:
    try:
        doc = codec.decode(value)
    except UnicodeDecodeError as exc:
        return Rejected(Reason.BAD_UTF8, f"the value is not valid UTF-8: {exc}")
    except codec.DecodeError as exc:
        return Rejected(Reason.INVALID_JSON, f"the value is not valid JSON: {exc}")
    if not isinstance(doc, dict):
        return Rejected(Reason.NOT_AN_OBJECT, f"the value is JSON {type(doc).__name__}, not an object")
    for field in REQUIRED:
        if field not in doc:
            return Rejected(Reason.MISSING_FIELD, f"{field} is missing")
    return _order(*(doc[field] for field in REQUIRED))


def _order(order_id: Any, user_id: Any, product_id: Any, amount: Any, timestamp: Any) -> Order | Rejected:
    if not isinstance(order_id, str) or not order_id:
        return Rejected(
            Reason.INVALID_ORDER_ID, f"order_id must be a non-empty string, got {_show(order_id)}",
        )
    if not isinstance(user_id, str) or not user_id:
        return Rejected(Reason.INVALID_USER_ID, f"user_id must be a non-empty string, got {_show(user_id)}")
    if not isinstance(product_id, str) or product_id not in PRODUCTS:
        return Rejected(
            Reason.UNKNOWN_PRODUCT,
            f"product_id must be one of {', '.join(PRODUCTS)}, got {_show(product_id)}",
        )
    if isinstance(amount, bool) or not isinstance(amount, (int, Decimal)):
        return Rejected(Reason.INVALID_AMOUNT, f"amount must be a JSON number, got {_show(amount)}")
    exact = Decimal(amount)
    if not exact.is_finite() or exact > MAX_AMOUNT:
        return Rejected(Reason.INVALID_AMOUNT, f"amount must be finite, got {_show(amount)}")
    if exact < MIN_AMOUNT:
        return Rejected(Reason.INVALID_AMOUNT, f"amount must be greater than 0, got {_show(amount)}")
    event_time = timestamps.parse(timestamp)
    if event_time is None:
        return Rejected(
            Reason.INVALID_TIMESTAMP,
            f"timestamp must be an ISO-8601 date and time string, got {_show(timestamp)}",
        )
    return Order(order_id, user_id, product_id, exact, timestamp, (event_time - EPOCH) // MICROSECOND)


def enrich(order: Order, processed_at: str) -> bytes:
    """The processed-orders record of a valid order: with its product's name and ``processed_at``."""
    return codec.encode(Wire(
        order_id=order.order_id, user_id=order.user_id, product_id=order.product_id,
        product_name=PRODUCTS[order.product_id], amount=msgspec.Raw(codec.encode(order.amount)),
        timestamp=order.timestamp, processed_at=processed_at,
    ))


def _show(value: Any, limit: int = 80) -> str:
    text = str(value) if isinstance(value, Decimal) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
