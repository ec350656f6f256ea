"""What the Order metrics page shows, as typed views a script can read too (the page's JSON).

Each view reads one source: the metrics store (a range of windows, never the whole table), the
run manifests, or Kafka (the newest dead letters, read without committing; consumer lag, read
without joining a group). Plain Python: the Airflow plugin only serves these.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from contextlib import closing
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import msgspec

from include.pipeline import settings
from include.pipeline.domain import catalogue, dead_letters
from include.pipeline.domain.reasons import Reason
from include.pipeline.kafka_io import access
from include.pipeline.kafka_io.admin import offset_range
from include.pipeline.kafka_io.client import Kafka
from include.pipeline.kafka_io.lag import lag
from include.pipeline.kafka_io.lag_probe import LagProbe
from include.pipeline.kafka_io.reading import BoundedRead
from include.pipeline.run import reconcile
from include.pipeline.store.metrics_store import MetricsStore
from include.pipeline.topology import CONSUMING, INPUTS, group

DEFAULT_RANGE = timedelta(hours=3)
MAX_RANGE = timedelta(days=7)
NEWEST_WINDOWS = 5  # windows in the table (one row per product in each)
VALUE_CHARS = 160  # of a dead letter's value: enough to see what is wrong with it
DEAD_LETTER_READER = group("dashboard")  # a name only: assigned partitions, never a commit


class RangeError(ValueError):
    """A range of event time the page cannot show; the message says what to send instead."""


class TimeRange(msgspec.Struct, frozen=True):
    """The range of event time shown: the windows starting in [start, end)."""

    start: datetime
    end: datetime


class Series(msgspec.Struct):
    """One product's windows in the range, as chart traces: parallel lists, oldest first."""

    product_id: str
    product_name: str
    windows: list[datetime]
    orders: list[int]
    revenue: list[Decimal]


class WindowRow(msgspec.Struct):
    """One product's totals in one window: a row of the table of the newest windows."""

    window_start: datetime
    product_id: str
    product_name: str
    orders: int
    revenue: Decimal
    average: Decimal


class MetricsView(msgspec.Struct):
    """The metrics of a range: its totals, a chart series per product, and its newest windows."""

    start: datetime
    end: datetime
    newest_window: datetime | None  # of the whole store; None when it has no rows
    orders: int  # in the range
    revenue: Decimal
    series: list[Series]
    newest: list[WindowRow]  # the newest NEWEST_WINDOWS windows of the range, newest first


class RunRow(msgspec.Struct):
    """One run, from its manifest: reconciled or not (and why not), and its counts."""

    dag_id: str
    run_id: str
    reconciled_at: datetime | None
    reconciled: bool
    problems: list[str]
    generated: int
    valid: int
    invalid: int
    invalid_reasons: dict[str, int]
    late: int
    duplicate: int
    counted: int


class DeadLetterRow(msgspec.Struct):
    """One record of orders-dlq: why it was dead-lettered, where from, and its key and value as text."""

    partition: int
    offset: int
    timestamp: datetime | None
    key: str | None
    value: str | None  # cut to VALUE_CHARS characters
    value_bytes: int
    reason: str
    detail: str
    source: str  # topic[partition]@offset


class DeadLettersView(msgspec.Struct):
    """Dead letters by reason over the recent runs, and the newest of them."""

    runs: int  # the recent runs the counts are over
    by_reason: dict[str, int]
    newest: list[DeadLetterRow]  # newest first


class LagRow(msgspec.Struct):
    """One consuming stage's lag on its input topic."""

    stage: str
    group: str
    topic: str
    records: int  # committed records the group has not committed past


def parse_range(start: str | None, end: str | None, newest_window: int | None, now: datetime) -> TimeRange:
    """The range asked for (ISO 8601; a time without an offset is UTC). Missing ends default to
    DEFAULT_RANGE up to the end of the newest window (``now`` with an empty store)."""
    low, high = _time("start", start), _time("end", end)
    if high is None:
        if low is not None:
            high = low + DEFAULT_RANGE
        elif newest_window is not None:
            high = datetime.fromtimestamp(newest_window + catalogue.WINDOW_SECONDS, timezone.utc)
        else:
            high = now
    if low is None:
        low = high - DEFAULT_RANGE
    if high <= low:
        raise RangeError(f"end ({high.isoformat()}) must be after start ({low.isoformat()})")
    if high - low > MAX_RANGE:
        days = (high - low) / timedelta(days=1)
        raise RangeError(
            f"a range is at most {MAX_RANGE.days} days, got {days:.4g} days: narrow start and end"
        )
    return TimeRange(low, high)


def _time(name: str, text: str | None) -> datetime | None:
    if text is None or not text.strip():
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise RangeError(
            f"{name} must be an ISO 8601 time such as 2026-01-05T10:00:00Z, got {text!r}"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def metrics(store: MetricsStore, start: str | None = None, end: str | None = None,
            now: datetime | None = None) -> MetricsView:
    """The windows starting in the range, per product and as the newest rows."""
    newest = store.newest_window()
    span = parse_range(start, end, newest, now or datetime.now(timezone.utc))
    rows = store.windows(_seconds(span.start), _seconds(span.end))
    series: dict[str, Series] = {}
    by_window: dict[int, list[WindowRow]] = defaultdict(list)
    for row in rows:
        when = datetime.fromtimestamp(row.window_start, timezone.utc)
        line = series.setdefault(row.product_id, Series(row.product_id, row.product_name, [], [], []))
        line.windows.append(when)
        line.orders.append(row.order_count)
        line.revenue.append(row.total_revenue)
        by_window[row.window_start].append(WindowRow(
            when, row.product_id, row.product_name, row.order_count, row.total_revenue, row.avg_order_value,
        ))
    newest_rows = [
        row for start_s in sorted(by_window, reverse=True)[:NEWEST_WINDOWS] for row in by_window[start_s]
    ]
    return MetricsView(
        start=span.start, end=span.end,
        newest_window=None if newest is None else datetime.fromtimestamp(newest, timezone.utc),
        orders=sum(row.order_count for row in rows),
        revenue=sum((row.total_revenue for row in rows), Decimal("0.00")),
        series=sorted(series.values(), key=lambda s: s.product_id), newest=newest_rows,
    )


def _seconds(moment: datetime) -> int:
    """``moment`` rounded up to whole seconds: windows start on whole seconds, so a window starts
    at or after ``moment`` (before it) exactly when it starts at or after (before) this."""
    return math.ceil(moment.timestamp())


def runs(limit: int) -> list[RunRow]:
    """The newest ``limit`` runs that reconcile wrote a manifest for, newest first."""
    return [
        RunRow(
            dag_id=m.dag_id, run_id=m.run_id, reconciled_at=m.reconciled_at, reconciled=m.reconciled,
            problems=m.problems, generated=m.summary.generated, valid=m.summary.valid,
            invalid=m.summary.invalid, invalid_reasons=m.summary.invalid_reasons, late=m.summary.late,
            duplicate=m.summary.duplicate, counted=m.summary.counted,
        )
        for m in reconcile.recent(limit)
    ]


def dead_letter_view(kafka: Kafka, recent_runs: list[RunRow], newest: int) -> DeadLettersView:
    """Dead letters by reason over ``recent_runs``, and the newest ``newest`` records of orders-dlq."""
    letters = newest_dead_letters(kafka, newest)
    return DeadLettersView(
        len(recent_runs), reason_counts(recent_runs), [dead_letter_row(d) for d in letters]
    )


def reason_counts(recent_runs: list[RunRow]) -> dict[str, int]:
    """Orders dead-lettered per reason, late and duplicate ones included."""
    by_reason: Counter[str] = Counter()
    for run in recent_runs:
        by_reason.update(run.invalid_reasons)
        by_reason.update({Reason.LATE: run.late, Reason.DUPLICATE: run.duplicate})
    return {reason: n for reason, n in sorted(by_reason.items()) if n}


def newest_dead_letters(kafka: Kafka, count: int) -> list[dead_letters.DeadLetter]:
    """The newest ``count`` records of orders-dlq. A bounded read from assigned offsets: no group
    joined, nothing committed. Transaction markers take offsets too, so it reads back from the
    end of each partition, further each time, until ``count`` records or the start."""
    access.ready(kafka)
    with closing(kafka.consumer(DEAD_LETTER_READER, quiet=True)) as consumer:
        admin = kafka.admin()
        bounds = offset_range(consumer, settings.DLQ)
        ends = {p: high for p, (_, high) in bounds.items()}
        back = count
        while True:
            starts = {p: max(low, high - back) for p, (low, high) in bounds.items()}
            read = BoundedRead(consumer, settings.DLQ, admin=admin, starts=starts, upto=ends)
            letters = [dead_letters.read(m) for batch in read for m in batch]
            per_partition = Counter(letter.partition for letter in letters)
            if all(per_partition[p] >= count or starts[p] == low for p, (low, _) in bounds.items()):
                break
            back *= 2
    letters.sort(
        key=lambda d: (d.timestamp or datetime.min.replace(tzinfo=timezone.utc), d.partition, d.offset)
    )
    return letters[::-1][:count]


def dead_letter_row(letter: dead_letters.DeadLetter) -> DeadLetterRow:
    """A dead letter as the page shows it: key and value as text, the value cut to ``VALUE_CHARS``."""
    def text(raw: bytes | None, limit: int | None = None) -> str | None:
        if raw is None:
            return None
        decoded = raw.decode(errors="replace")
        return decoded if limit is None or len(decoded) <= limit else decoded[:limit] + "…"

    return DeadLetterRow(
        partition=letter.partition, offset=letter.offset, timestamp=letter.timestamp, key=text(letter.key),
        value=text(letter.value, VALUE_CHARS), value_bytes=len(letter.value or b""), reason=letter.reason,
        detail=letter.detail,
        source=f"{letter.source_topic}[{letter.source_partition}]@{letter.source_offset}",
    )


def lags(kafka: Kafka) -> list[LagRow]:
    """Each consuming stage's lag on its input topic."""
    access.ready(kafka)
    with LagProbe(kafka, INPUTS, quiet=True) as probe:
        per_topic = lag(*probe.offsets())
    return [
        LagRow(stage.name, stage.group, stage.input, per_topic.get(stage.input, 0)) for stage in CONSUMING
    ]
