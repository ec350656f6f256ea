"""The analyze stage's decisions, as plain Python: which valid orders count, and the state that
carries them from run to run (restored from, and saved to, the analyze-state changelog).

An order counts once: an order_id already counted within the dedup horizon is a ``duplicate``;
an order whose window ended more than the grace period before the newest event time counted
so far (the watermark) is ``late``. Neither is counted; both go to the dead-letter topic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from include.pipeline import codec, money
from include.pipeline.orders import Order
from include.pipeline.settings import WINDOW_SECONDS
from include.pipeline.windows import Aggregate, TumblingWindows, WindowKey, aggregate_from_state, state_record

US = 1_000_000
DUPLICATE, LATE = "duplicate", "late"


@dataclass
class Ledger:
    """Everything counted so far: what the sink's totals must add up to."""

    count: int = 0
    revenue: Decimal = Decimal(0)  # exact sum of the counted amounts
    revenue_cents: Decimal = Decimal(0)  # sum over windows of each window's total in cents

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "revenue": str(self.revenue), "revenue_cents": str(self.revenue_cents)}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Ledger:
        return cls(int(doc["count"]), Decimal(doc["revenue"]), Decimal(doc["revenue_cents"]))


@dataclass
class Analyzer:
    grace_us: int
    horizon_us: int
    windows: TumblingWindows = field(default_factory=TumblingWindows)
    seen: dict[str, int] = field(default_factory=dict)  # order_id -> event time (us), within the horizon
    watermark: int | None = None  # newest event time counted (us)
    ledger: Ledger = field(default_factory=Ledger)
    new_ids: list[str] = field(default_factory=list)  # counted since the last take_changes()

    @classmethod
    def create(cls, grace_seconds: float, horizon_seconds: float) -> Analyzer:
        if grace_seconds < 0 or horizon_seconds < grace_seconds:
            raise ValueError(
                f"need 0 <= grace_seconds <= dedup_horizon_seconds, got {grace_seconds} and {horizon_seconds}: "
                "an order forgotten by the dedup horizon must already be late"
            )
        return cls(int(grace_seconds * US), int(horizon_seconds * US))

    def offer(self, order: Order) -> str | None:
        """Count the order, or say why not (DUPLICATE or LATE)."""
        if order.order_id in self.seen:
            return DUPLICATE
        event_us = order.event_us
        if self.watermark is not None and (order.window_start + WINDOW_SECONDS) * US < self.watermark - self.grace_us:
            return LATE
        self.windows.add(order)
        self.seen[order.order_id] = event_us
        self.new_ids.append(order.order_id)
        if self.watermark is None or event_us > self.watermark:
            self.watermark = event_us
        self.ledger.count += 1
        self.ledger.revenue = money.add(self.ledger.revenue, order.amount)
        return None

    def take_changes(self) -> tuple[list[tuple[WindowKey, Aggregate]], list[tuple[bytes, bytes]]]:
        """What changed since the last call: the windows with their new totals, and the
        changelog records that save the state as it is now."""
        windows = []
        for key, cents_before in self.windows.take_changed():
            aggregate = self.windows.aggregates[key]
            self.ledger.revenue_cents += money.to_cents(aggregate.total) - cents_before
            windows.append((key, aggregate))
        records = [(window_key(key), codec.encode(state_record(aggregate))) for key, aggregate in windows]
        records += [(order_key(order_id), codec.encode(self.seen[order_id])) for order_id in self.new_ids]
        records += [(b"watermark", codec.encode(self.watermark)), (b"ledger", codec.encode(self.ledger.to_json()))]
        self.new_ids = []
        return windows, records

    def expire(self) -> list[tuple[bytes, None]]:
        """Forget the windows no order can change any more (every order for them is late) and
        the order ids older than the dedup horizon; returns their changelog tombstones."""
        if self.watermark is None:
            return []
        closed = [
            key for key in self.windows.aggregates
            if (key[0] + WINDOW_SECONDS) * US < self.watermark - self.grace_us
        ]
        forgotten = [order_id for order_id, at in self.seen.items() if at < self.watermark - self.horizon_us]
        for key in closed:
            del self.windows.aggregates[key]
        for order_id in forgotten:
            del self.seen[order_id]
        return [(window_key(key), None) for key in closed] + [(order_key(order_id), None) for order_id in forgotten]

    # The changelog: keys "window:<start>:<product>", "order:<order_id>", "watermark", "ledger".

    def restore(self, key: bytes, value: bytes | None) -> None:
        """Apply one changelog record (the newest per key wins; None is a tombstone)."""
        kind, _, rest = key.partition(b":")
        if kind == b"window":
            start, product_id = rest.decode().split(":", 1)
            if value is None:
                self.windows.aggregates.pop((int(start), product_id), None)
            else:
                self.windows.aggregates[(int(start), product_id)] = aggregate_from_state(codec.decode(value))
        elif kind == b"order":
            if value is None:
                self.seen.pop(rest.decode(), None)
            else:
                self.seen[rest.decode()] = codec.decode(value)
        elif kind == b"watermark" and value is not None:
            self.watermark = codec.decode(value)
        elif kind == b"ledger" and value is not None:
            self.ledger = Ledger.from_json(codec.decode(value))


def window_key(key: WindowKey) -> bytes:
    return f"window:{key[0]}:{key[1]}".encode()


def order_key(order_id: str) -> bytes:
    return b"order:" + order_id.encode()
