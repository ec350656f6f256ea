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
from include.pipeline.dedup import SEGMENT_KEY, SeenOrders, fingerprint
from include.pipeline.orders import Order
from include.pipeline.settings import WINDOW_SECONDS
from include.pipeline.windows import (
    Aggregate, LedgerMark, TumblingWindows, WindowKey, aggregate_from_state, state_record,
)

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

    def mark(self) -> LedgerMark:
        """What the product-metrics records of a batch carry of it (the ``ledger`` header)."""
        return LedgerMark(self.count, self.revenue_cents)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Ledger:
        return cls(int(doc["count"]), Decimal(doc["revenue"]), Decimal(doc["revenue_cents"]))


@dataclass
class Analyzer:
    grace_us: int
    horizon_us: int
    windows: TumblingWindows = field(default_factory=TumblingWindows)
    seen: SeenOrders = field(default_factory=SeenOrders)  # counted order ids within the horizon
    watermark: int | None = None  # newest event time counted (us)
    ledger: Ledger = field(default_factory=Ledger)
    counted: dict[bytes, int] = field(default_factory=dict)  # since take_changes(): fingerprint -> event us

    @classmethod
    def create(cls, grace_seconds: float, horizon_seconds: float) -> Analyzer:
        check_horizon(grace_seconds, horizon_seconds)
        return cls(int(grace_seconds * US), int(horizon_seconds * US))

    def offer(self, order: Order) -> str | None:
        """Count the order, or say why not (DUPLICATE or LATE)."""
        return self.offer_all([order])[0]

    def offer_all(self, orders: list[Order]) -> list[str | None]:
        """offer() for each order in turn; the dedup lookup is done for all of them at once."""
        fingerprints = [fingerprint(order.order_id) for order in orders]
        seen_before = self.seen.contains(fingerprints).tolist()
        counted, watermark, grace_us = self.counted, self.watermark, self.grace_us
        accepted: list[Order] = []
        verdicts: list[str | None] = []
        for order, key, before in zip(orders, fingerprints, seen_before):
            if before or key in counted:
                verdicts.append(DUPLICATE)
                continue
            event_us = order.event_us
            if watermark is not None and (order.window_start + WINDOW_SECONDS) * US < watermark - grace_us:
                verdicts.append(LATE)
                continue
            counted[key] = event_us
            if watermark is None or event_us > watermark:
                watermark = event_us
            accepted.append(order)
            verdicts.append(None)
        self.watermark = watermark
        self.windows.add_all(accepted)
        self.ledger.count += len(accepted)
        self.ledger.revenue = money.total((order.amount for order in accepted), self.ledger.revenue)
        return verdicts

    def take_changes(self) -> tuple[list[tuple[WindowKey, Aggregate]], list[tuple[bytes, bytes]]]:
        """What changed since the last call: the windows with their new totals, and the
        changelog records that save the state as it is now."""
        windows = []
        for key, cents_before in self.windows.take_changed():
            aggregate = self.windows.aggregates[key]
            self.ledger.revenue_cents += money.to_cents(aggregate.total) - cents_before
            windows.append((key, aggregate))
        records = [(window_key(key), codec.encode(state_record(aggregate))) for key, aggregate in windows]
        records += self.seen.add(list(self.counted), list(self.counted.values()))
        records += [(b"watermark", codec.encode(self.watermark)), (b"ledger", codec.encode(self.ledger.to_json()))]
        self.counted = {}
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
        for key in closed:
            del self.windows.aggregates[key]
        forgotten = self.seen.forget_before(self.watermark - self.horizon_us)
        return [(window_key(key), None) for key in closed] + [(key, None) for key in forgotten]

    # The changelog: keys "window:<start>:<product>", "orders:<segment hash>", "watermark", "ledger".
    # Restoring reads it twice: restore() each record, then restore_ids() each record.

    def restore(self, key: bytes, value: bytes | None) -> None:
        """Apply one changelog record (the newest per key wins; None is a tombstone)."""
        kind, _, rest = key.partition(b":")
        if kind == b"window":
            start, product_id = rest.decode().split(":", 1)
            if value is None:
                self.windows.aggregates.pop((int(start), product_id), None)
            else:
                self.windows.aggregates[(int(start), product_id)] = aggregate_from_state(codec.decode(value))
        elif key.startswith(SEGMENT_KEY):
            self.seen.note(key, value)
        elif kind == b"watermark" and value is not None:
            self.watermark = codec.decode(value)
        elif kind == b"ledger" and value is not None:
            self.ledger = Ledger.from_json(codec.decode(value))

    def restore_ids(self, key: bytes, value: bytes | None) -> None:
        """Load the counted ids of a segment that restore() found live."""
        if key.startswith(SEGMENT_KEY) and value is not None:
            self.seen.load(key, value)


def check_horizon(grace_seconds: float, horizon_seconds: float) -> None:
    if grace_seconds < 0 or horizon_seconds < grace_seconds:
        raise ValueError(
            f"need 0 <= grace_seconds <= dedup_horizon_seconds, got {grace_seconds} and {horizon_seconds}: "
            "an order forgotten by the dedup horizon must already be late"
        )


def window_key(key: WindowKey) -> bytes:
    return f"window:{key[0]}:{key[1]}".encode()
