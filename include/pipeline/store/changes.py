"""The sink's pure step: what a batch of product-metrics partials changes in the metrics store
(the partials and the window rows to upsert) and in its all-runs totals."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterable

from include.pipeline.domain import money
from include.pipeline.domain.windows import (
    Ledger,
    LedgerMark,
    Metric,
    Partial,
    PartialKey,
    WindowKey,
    combined,
)


@dataclass
class Totals:
    """What reconcile compares, over every row of the store, with the analyze ledgers they add
    up to: ``ledgers``, the newest of each partition, kept with them in each transaction."""

    rows: int = 0
    order_count: int = 0
    total_revenue: Decimal = Decimal(0)  # sum of the windows' totals in cents
    counted_revenue: Decimal = Decimal(0)  # sum of the partials' exact totals
    ledgers: dict[int, LedgerMark] = field(default_factory=dict)  # partition -> newest mark

    @property
    def ledger(self) -> Ledger | None:
        """The partitions' ledgers as one (None: no applied record carried one)."""
        if not self.ledgers:
            return None
        total = Ledger()
        for mark in self.ledgers.values():
            total = total.plus(Ledger(mark.count, mark.revenue))
        return total

    def note(self, marks: Iterable[LedgerMark | None]) -> None:
        """Keep the newest ledger of each partition the applied records carry (None: a record
        without one). Newest is the largest count: a partition's ledger only grows (every analyze
        batch that writes its partials has counted orders), and a sink reads the partitions of
        product-metrics in no order between them, so an older batch's record may come later."""
        for mark in marks:
            if mark is not None and mark.count > self.ledgers.get(mark.partition, LedgerMark(-1)).count:
                self.ledgers[mark.partition] = mark

    def add(self, new: Metric | None, old: Metric | None) -> None:
        """Moves the totals from the row ``old`` (None: a new row) to ``new`` (None: deleted)."""
        self.rows += (new is not None) - (old is not None)
        self.order_count += (new.order_count if new else 0) - (old.order_count if old else 0)
        after, before = (new.total_revenue if new else Decimal(0)), (old.total_revenue if old else Decimal(0))
        self.total_revenue = money.subtract(money.total([after], self.total_revenue), before)


@dataclass
class Changes:
    """The partials and rows one sink transaction upserts, and how many rows are new."""

    partials: list[Partial] = field(default_factory=list)
    upserts: list[Metric] = field(default_factory=list)
    deletes: list[WindowKey] = field(default_factory=list)  # windows whose partials add up to none
    inserted: int = 0
    updated: int = 0
    imported: int = 0  # lines of an old metrics.json applied before them


def changes(
    records: Iterable[Partial], partials: dict[PartialKey, Partial], rows: dict[WindowKey, Metric],
    totals: Totals,
) -> Changes:
    """The partials and window rows to upsert for records in offset order (the newest per key
    wins, and one equal to what the store holds changes nothing), given the store's partials and
    rows of the records' windows; ``totals`` moved to match."""
    newest = {record.key: record for record in records}
    result = Changes()
    by_window: dict[WindowKey, dict[int, Partial]] = defaultdict(dict)
    for key, partial in partials.items():
        by_window[partial.window][key[2]] = partial
    touched = set()
    for key, record in newest.items():
        old = partials.get(key)
        if old == record:
            continue
        result.partials.append(record)
        by_window[record.window][record.partition] = record
        touched.add(record.window)
        before = old.total if old else Decimal(0)
        totals.counted_revenue = money.subtract(money.total([record.total], totals.counted_revenue), before)
    for window in sorted(touched):
        parts, old = by_window[window].values(), rows.get(window)
        if not sum(part.order_count for part in parts):  # replay's zeros, before its other partials
            if old is not None:
                totals.add(None, old)
                result.deletes.append(window)
            continue
        row = combined(window, parts)
        if row == old:
            continue
        totals.add(row, old)
        result.upserts.append(row)
        if old is None:
            result.inserted += 1
        else:
            result.updated += 1
    return result
