"""The analyze stage's decisions, as plain Python: which valid orders count, and the state that
carries them from run to run (restored from, and saved to, the analyze-state changelog).

An order counts once: an order_id already counted within the dedup horizon is a ``duplicate``;
an order whose window ended more than the grace period before the newest event time counted
so far (the watermark) is ``late``. Neither is counted; both go to the dead-letter topic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from include.pipeline import money, state_codec
from include.pipeline.dedup import SeenOrders, fingerprint
from include.pipeline.orders import Order
from include.pipeline.reasons import Reason
from include.pipeline.settings import WINDOW_SECONDS
from include.pipeline.state_codec import Record
from include.pipeline.windows import Aggregate, Ledger, TumblingWindows, WindowKey

US = 1_000_000


class CountedIds(Protocol):
    """The order ids counted within the dedup horizon, as fingerprints with their event times,
    saved as segments of the changelog (``dedup.SeenOrders`` is the one in use)."""

    def __len__(self) -> int: ...

    def contains(self, fingerprints: list[bytes]) -> np.ndarray:
        """Which of ``fingerprints`` were counted before (a bool per fingerprint)."""

    def add(self, fingerprints: list[bytes], event_us: list[int]) -> list[Record]:
        """Remember newly counted ids; returns the changelog records that save them."""

    def forget_before(self, cutoff_us: int) -> list[bytes]:
        """Forget ids older than ``cutoff_us``; returns the keys of the segments now empty."""

    def note(self, segment: state_codec.Segment) -> None:
        """Restoring, first pass: whether a segment is live (no later tombstone)."""

    def load(self, segment: state_codec.Segment) -> None:
        """Restoring, second pass: the ids of a live segment."""


@dataclass
class Analyzer:
    """Counts orders into their windows, once each, and keeps the state that carries the counting
    from batch to batch and run to run."""

    grace_us: int
    horizon_us: int
    windows: TumblingWindows = field(default_factory=TumblingWindows)
    seen: CountedIds = field(default_factory=SeenOrders)  # counted order ids within the horizon
    watermark: int | None = None  # newest event time counted (us)
    ledger: Ledger = field(default_factory=Ledger)
    counted: dict[bytes, int] = field(default_factory=dict)  # since take_changes(): fingerprint -> event us

    @classmethod
    def create(cls, grace_seconds: float, horizon_seconds: float) -> Analyzer:
        """An analyzer with nothing counted yet, its settings checked."""
        check_horizon(grace_seconds, horizon_seconds)
        return cls(int(grace_seconds * US), int(horizon_seconds * US))

    def offer(self, order: Order) -> Reason | None:
        """Count the order, or say why not (a duplicate or late)."""
        return self.offer_all([order])[0]

    def offer_all(self, orders: list[Order]) -> list[Reason | None]:
        """offer() for each order in turn; the dedup lookup is done for all of them at once."""
        fingerprints = [fingerprint(order.order_id) for order in orders]
        seen_before = self.seen.contains(fingerprints).tolist()
        counted, watermark, grace_us = self.counted, self.watermark, self.grace_us
        accepted: list[Order] = []
        verdicts: list[Reason | None] = []
        for order, key, before in zip(orders, fingerprints, seen_before):
            if before or key in counted:
                verdicts.append(Reason.DUPLICATE)
                continue
            event_us = order.event_us
            if watermark is not None and (order.window_start + WINDOW_SECONDS) * US < watermark - grace_us:
                verdicts.append(Reason.LATE)
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

    def take_changes(self) -> tuple[list[tuple[WindowKey, Aggregate]], list[Record]]:
        """What changed since the last call: the windows with their new totals, and the
        changelog records that save the state as it is now."""
        windows = [(key, self.windows.aggregates[key]) for key in self.windows.take_changed()]
        records = [state_codec.window_record(key, aggregate) for key, aggregate in windows]
        records += self.seen.add(list(self.counted), list(self.counted.values()))
        records += [state_codec.watermark_record(self.watermark), state_codec.ledger_record(self.ledger)]
        self.counted = {}
        return windows, records

    def expire(self) -> list[Record]:
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
        return [state_codec.window_record(key, None) for key in closed] + [(key, None) for key in forgotten]

    # Restoring reads the changelog twice: restore() each record, then restore_ids() each record,
    # so that only the live segments of order ids are ever decoded.

    def restore(self, key: bytes, value: bytes | None) -> None:
        """Apply one changelog record (the newest per key wins; None is a tombstone)."""
        entry = state_codec.decode(key, value)
        if isinstance(entry, state_codec.Window):
            if entry.aggregate is None:
                self.windows.aggregates.pop(entry.key, None)
            else:
                self.windows.aggregates[entry.key] = entry.aggregate
        elif isinstance(entry, state_codec.Segment):
            self.seen.note(entry)
        elif isinstance(entry, state_codec.Watermark):
            self.watermark = entry.us
        elif isinstance(entry, Ledger):
            self.ledger = entry

    def restore_ids(self, key: bytes, value: bytes | None) -> None:
        """Load the counted ids of a segment that restore() found live."""
        if value is not None and state_codec.is_segment(key):
            self.seen.load(state_codec.Segment(key, value))


def check_horizon(grace_seconds: float, horizon_seconds: float) -> None:
    """ValueError unless an order the dedup horizon forgets is already late."""
    if grace_seconds < 0 or horizon_seconds < grace_seconds:
        raise ValueError(
            f"need 0 <= grace_seconds <= dedup_horizon_seconds, got {grace_seconds} and {horizon_seconds}: "
            "an order forgotten by the dedup horizon must already be late"
        )
