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

from include.pipeline.domain import dedup, money, state_codec
from include.pipeline.domain.catalogue import WINDOW_SECONDS
from include.pipeline.domain.dedup import SeenOrders
from include.pipeline.domain.order_columns import OrderColumns
from include.pipeline.domain.orders import Order
from include.pipeline.domain.reasons import Reason
from include.pipeline.domain.state_codec import Record
from include.pipeline.domain.windows import Aggregate, Ledger, TumblingWindows, WindowKey

US = 1_000_000


class CountedIds(Protocol):
    """The order ids counted within the dedup horizon, as fingerprints with their event times,
    saved as segments of the changelog (``dedup.SeenOrders`` is the one in use)."""

    def __len__(self) -> int: ...

    def contains(self, fingerprints: np.ndarray) -> np.ndarray:
        """Which of ``fingerprints`` were counted before (a bool per fingerprint)."""

    def remember(self, fingerprints: np.ndarray, event_us: np.ndarray) -> None:
        """Newly counted ids, found by contains() from now on."""

    def saved(self, fingerprints: np.ndarray, event_us: np.ndarray) -> list[Record]:
        """The changelog records that save ids remembered since the last call."""

    def forget_before(self, cutoff_us: int) -> list[bytes]:
        """Forget ids older than ``cutoff_us``; returns the keys of the segments now empty."""

    def note(self, segment: state_codec.Segment) -> None:
        """Restoring, first pass: whether a segment is live (no later tombstone)."""

    def load(self, segment: state_codec.Segment) -> None:
        """Restoring, second pass: the ids of a live segment."""


COUNTED, DUPLICATE, LATE = 0, 1, 2  # offer_batch's verdicts
VERDICTS: tuple[Reason | None, ...] = (None, Reason.DUPLICATE, Reason.LATE)
NO_WATERMARK = -(2**62)  # below any event time, and far enough from int64's end to subtract from


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
    # Counted since take_changes(), remembered but not yet saved: (fingerprints, event times) per offer.
    counted: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)

    @classmethod
    def create(cls, grace_seconds: float, horizon_seconds: float, seen: CountedIds | None = None) -> Analyzer:
        """An analyzer with nothing counted yet, its settings checked; ``seen``, the set of counted
        ids to keep (a stage's spills to disk), else one in memory."""
        check_horizon(grace_seconds, horizon_seconds)
        analyzer = cls(int(grace_seconds * US), int(horizon_seconds * US))
        if seen is not None:
            analyzer.seen = seen
        return analyzer

    def offer(self, order: Order) -> Reason | None:
        """Count the order, or say why not (a duplicate or late)."""
        return VERDICTS[int(self.offer_batch(OrderColumns.of([order]))[0])]

    def offer_batch(self, orders: OrderColumns) -> np.ndarray:
        """Count the orders as offering each in turn would, or say why not: a verdict per order
        (COUNTED, DUPLICATE or LATE), decided for the whole batch at once.

        In turn, an order is a duplicate if its id was counted before (within the horizon, or
        earlier in the batch); else late if its window ended more than the grace period before
        the watermark, the newest event time counted before it. A late order's event time is
        below that watermark, so the watermark before each order is the running maximum over the
        orders before it that are not duplicates, late or not. Of an id's copies in the batch,
        the first that is not late counts; each round moves on from a late one to the next copy.
        """
        keys = dedup.fingerprints(orders.order_ids)
        event_us, n = orders.event_us, len(orders)
        before = self.seen.contains(keys)
        # Each order's next copy in the batch (-1: none), and whether it is its id's first copy.
        by_key = dedup.sort_order(keys)
        repeat = np.zeros(n, bool)
        repeat[1:] = keys[by_key[1:]] == keys[by_key[:-1]]
        next_copy = np.full(n, -1)
        next_copy[by_key[:-1][repeat[1:]]] = by_key[1:][repeat[1:]]
        candidate = np.zeros(n, bool)
        candidate[by_key] = ~repeat
        candidate &= ~before
        passed = np.zeros(n, bool)  # copies found late while candidates
        window_end = (orders.window_start + WINDOW_SECONDS) * US
        start = NO_WATERMARK if self.watermark is None else self.watermark
        while True:
            running = np.maximum.accumulate(np.where(candidate, event_us, NO_WATERMARK))
            watermark = np.maximum(np.concatenate(([start], running[:-1])), start)
            late = window_end < watermark - self.grace_us
            moving = candidate & late & (next_copy >= 0)
            if not moving.any():
                break
            candidate[moving], passed[moving] = False, True
            candidate[next_copy[moving]] = True
        counts = candidate & ~late
        verdicts = np.where(counts, COUNTED, np.where((candidate & late) | passed, LATE, DUPLICATE))
        if counts.any():
            counted = orders.take(np.flatnonzero(counts))
            self.counted.append((keys[counts], counted.event_us))
            self.seen.remember(keys[counts], counted.event_us)
            self.watermark = max(start, int(counted.event_us.max()))
            self.windows.add(counted)
            [total] = counted.totals(np.zeros(len(counted), np.int64), 1)
            self.ledger.count += len(counted)
            self.ledger.revenue = money.total([total], self.ledger.revenue)
        return verdicts

    def take_changes(self) -> tuple[list[tuple[WindowKey, Aggregate]], list[Record]]:
        """What changed since the last call: the windows with their new totals, and the
        changelog records that save the state as it is now."""
        windows = [(key, self.windows.aggregates[key]) for key in self.windows.take_changed()]
        records = [state_codec.window_record(key, aggregate) for key, aggregate in windows]
        if self.counted:
            keys, event_us = (np.concatenate(column) for column in zip(*self.counted))
            records += self.seen.saved(keys, event_us)
        records += [state_codec.watermark_record(self.watermark), state_codec.ledger_record(self.ledger)]
        self.counted = []
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
    """ValueError unless an order the dedup horizon forgets is already late. Ids are forgotten by
    event time, lateness goes by the window's end: an order at its window's start is late only
    once the watermark passes it by a window and the grace, so the horizon must cover both."""
    if grace_seconds < 0 or horizon_seconds < grace_seconds + WINDOW_SECONDS:
        raise ValueError(
            f"need 0 <= grace_seconds and grace_seconds + {WINDOW_SECONDS} <= dedup_horizon_seconds, "
            f"got {grace_seconds} and {horizon_seconds}: an order forgotten by the dedup horizon must "
            "already be late (its window has ended, plus the grace period)"
        )
