"""A sink transaction's unit of work on the store: rows, partials, offsets and totals, committed
together or not at all."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable

from sqlalchemy import (
    Table,
    delete,
    select,
    update,
)

from include.pipeline.domain.windows import LEGACY, LedgerMark, Metric, Partial, PartialKey, WindowKey
from include.pipeline.store import changes as store_changes
from include.pipeline.store.schema import (
    METRIC_COLUMNS,
    PARTIAL_COLUMNS,
    analyze_ledgers,
    product_metric_partials,
    product_metrics,
    sink_offsets,
    store_info,
)

CHUNK = 1000  # keys per lookup and rows per import step: well under both engines' parameter limits


class StoreTransaction:
    """What one sink transaction reads and writes. The store's row is locked for the transaction
    (PostgreSQL; SQLite begins IMMEDIATE), so two sinks cannot interleave."""

    def __init__(self, conn, insert) -> None:
        self.conn, self._insert = conn, insert
        info = conn.execute(select(store_info).with_for_update()).one()
        self.cluster_id = info.kafka_cluster_id
        self.totals = totals_of(conn, info)
        self.ledgers_before = dict(self.totals.ledgers)
        self.now = now()
        self.imported = 0  # lines of an old metrics.json this transaction imported

    def _by_window(self, table: Table, columns: list, windows: set[WindowKey]) -> list:
        """The rows of ``table`` of these windows. Looked up by window_start (a list of (window,
        product) pairs takes PostgreSQL longer to plan than to run), then kept by window."""
        found = []
        starts = sorted({start for start, _ in windows})
        for i in range(0, len(starts), CHUNK):
            query = select(*columns).where(table.c.window_start.in_(starts[i:i + CHUNK]))
            found += [row for row in self.conn.execute(query)
                      if (row.window_start, row.product_id) in windows]
        return found

    def current(self, windows: set[WindowKey]) -> dict[WindowKey, Metric]:
        """The rows of these windows."""
        rows = (Metric(*row) for row in self._by_window(product_metrics, METRIC_COLUMNS, windows))
        return {row.key: row for row in rows}

    def partials(self, windows: set[WindowKey]) -> dict[PartialKey, Partial]:
        """Every partial of these windows."""
        found = (Partial(*row) for row in self._by_window(product_metric_partials, PARTIAL_COLUMNS, windows))
        return {partial.key: partial for partial in found}

    def apply(self, records: list[Partial]) -> store_changes.Changes:
        """Upsert what the records change (the newest per key wins), each window's row the sum of
        its partials, totals moved to match."""
        windows = {r.window for r in records}
        changes = store_changes.changes(records, self.partials(windows), self.current(windows), self.totals)
        if changes.partials:
            self._upsert(product_metric_partials, ["window_start", "product_id", "partition"],
                         [_fields(p) for p in changes.partials])
        if changes.upserts:
            self._upsert(product_metrics, ["window_start", "product_id"],
                         [{**_fields(m), "updated_at": self.now} for m in changes.upserts])
        for start, product_id in changes.deletes:
            self.conn.execute(delete(product_metrics).where(
                product_metrics.c.window_start == start, product_metrics.c.product_id == product_id,
            ))
        return changes

    def _upsert(self, table: Table, key: list[str], rows: list[dict]) -> None:
        statement = self._insert(table)
        self.conn.execute(
            statement.on_conflict_do_update(
                index_elements=key,
                set_={c.name: statement.excluded[c.name] for c in table.c if not c.primary_key},
            ),
            rows,
        )

    def import_metrics(self, metrics: Iterable[Metric]) -> int:
        """Apply an old metrics.json's lines (each the partial of partition -1 of its window),
        CHUNK at a time; returns how many were read."""
        lines, chunk = 0, []
        for metric in metrics:
            chunk.append(Partial(metric.window_start, metric.product_id, LEGACY, metric.order_count,
                                 metric.total_revenue))
            lines += 1
            if len(chunk) == CHUNK:
                self.apply(chunk)
                chunk = []
        self.apply(chunk)
        return lines

    def offsets(self, topic: str) -> dict[int, int]:
        """Per partition of ``topic``, the next offset the rows do not include yet."""
        return offsets_of(self.conn, topic)

    def set_offsets(self, topic: str, offsets: dict[int, int]) -> None:
        """Moves the offsets of ``topic`` on with the rows: the sink resumes from them, exactly."""
        if offsets:
            self._upsert(sink_offsets, ["topic", "partition"], [
                {"topic": topic, "partition": p, "next_offset": o} for p, o in offsets.items()
            ])

    def finish(self, cluster_id: str) -> None:
        """Writes the totals, the ledgers and the cluster the rows come from, as the transaction left them."""
        t = self.totals
        self.conn.execute(update(store_info).values(
            kafka_cluster_id=cluster_id, rows=t.rows, order_count=t.order_count,
            total_revenue=t.total_revenue, counted_revenue=t.counted_revenue, updated_at=self.now,
        ))
        changed = [mark for p, mark in t.ledgers.items() if self.ledgers_before.get(p) != mark]
        if changed:
            self._upsert(analyze_ledgers, ["partition"], [
                {"partition": m.partition, "count": m.count, "revenue": m.revenue} for m in changed
            ])


def totals_of(conn, info) -> store_changes.Totals:
    """The totals of the metrics_store row ``info``, and the ledgers."""
    ledgers = {
        row.partition: LedgerMark(row.count, row.revenue, row.partition)
        for row in conn.execute(select(analyze_ledgers))
    }
    return store_changes.Totals(
        info.rows, info.order_count, info.total_revenue, info.counted_revenue, ledgers,
    )


def _fields(record: Metric | Partial) -> dict:
    return {name: getattr(record, name) for name in record.__struct_fields__}


def offsets_of(conn, topic: str) -> dict[int, int]:
    """Per partition of ``topic``, the next offset the rows do not include yet."""
    columns = sink_offsets.c
    return dict(conn.execute(
        select(columns.partition, columns.next_offset).where(columns.topic == topic)
    ).all())


def now() -> datetime:
    """The time a transaction writes rows at."""
    return datetime.now(timezone.utc)
