"""The sink's pure step: what a batch of product-metrics records changes in the metrics store
(the rows to upsert) and in its all-runs totals."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterable

from include.pipeline import money
from include.pipeline.windows import LedgerMark, Metric, WindowKey


@dataclass
class Totals:
    """What reconcile compares, over every row of the store, with the analyze ledger they add up
    to: ``ledger``, kept with them in each transaction (None: no applied record carried one)."""

    rows: int = 0
    order_count: int = 0
    total_revenue: Decimal = Decimal(0)  # sum of the windows' totals in cents
    ledger: LedgerMark | None = None

    def note(self, ledgers: Iterable[LedgerMark | None]) -> None:
        """Keep the newest of the ledgers the applied records carry (None: a record without one
        leaves it as it is). Newest is the largest count: a ledger only grows (every analyze batch
        that writes records has counted orders), and a sink reads the partitions in no order
        between them, so an older batch's record may come after a newer one's."""
        for ledger in ledgers:
            if ledger is not None and (self.ledger is None or ledger.count > self.ledger.count):
                self.ledger = ledger

    def add(self, new: Metric, old: Metric | None) -> None:
        """Moves the totals from the row ``old`` (None: a new row) to ``new``."""
        self.rows += old is None
        self.order_count += new.order_count - (old.order_count if old else 0)
        before = old.total_revenue if old else Decimal(0)
        self.total_revenue = money.subtract(money.total([new.total_revenue], self.total_revenue), before)


@dataclass
class Changes:
    """The rows one sink transaction upserts, and how many of them are new."""

    upserts: list[Metric] = field(default_factory=list)
    inserted: int = 0
    updated: int = 0
    imported: int = 0  # lines of an old metrics.json applied before them


def changes(records: Iterable[Metric], current: dict[WindowKey, Metric], totals: Totals) -> Changes:
    """The rows to upsert for records in offset order (records carry totals: the newest per key
    wins, and one equal to its row changes nothing), with ``totals`` moved to match."""
    newest = {record.key: record for record in records}
    result = Changes()
    for key, record in newest.items():
        old = current.get(key)
        if old == record:
            continue
        totals.add(record, old)
        result.upserts.append(record)
        if old is None:
            result.inserted += 1
        else:
            result.updated += 1
    return result
