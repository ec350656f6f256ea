"""What the stages count, each call once per batch (or per transaction, or per run), never per
record: a record's cost stays the stage's own. Each takes the ``Metrics`` to count into, the
process's by default (a test passes its own)."""

from __future__ import annotations

from typing import Callable, Mapping

from include.pipeline.metrics.catalogue import METRICS, Metrics


def stage_started(stage: str, outage_seconds: Callable[[], float], metrics: Metrics = METRICS) -> None:
    """The process runs ``stage`` now: the seconds Kafka does not answer from here on
    (``outage_seconds``, the process's total so far) are its."""
    metrics.kafka_unavailable.track(stage, outage_seconds)


def batch(
    stage: str, seconds: float, read: tuple[str, int] | None = None, written: tuple[str, int] | None = None,
    dead_letters: Mapping[str, int] | None = None, metrics: Metrics = METRICS,
) -> None:
    """A committed batch of ``stage``: how long it took, read to commit, and what it read from and
    wrote to which topic ((topic, records)), and dead-lettered by reason."""
    metrics.batch_seconds.labels(stage).observe(seconds)
    if read is not None:
        metrics.records_read.labels(stage, read[0]).inc(read[1])
    if written is not None:
        metrics.records_written.labels(stage, written[0]).inc(written[1])
    for reason, records in (dead_letters or {}).items():
        metrics.dead_letters.labels(stage, reason).inc(records)


def lag(stage: str, topic: str, behind: Mapping[int, int], metrics: Metrics = METRICS) -> None:
    """The records of each partition of ``topic`` that ``stage``'s group has yet to read."""
    for partition, records in behind.items():
        metrics.consumer_lag.labels(stage, topic, str(partition)).set(records)


def transaction(stage: str, committed: bool, metrics: Metrics = METRICS) -> None:
    """A Kafka transaction of ``stage`` that committed, or did not (aborted, or sent again)."""
    metrics.transactions.labels(stage, "committed" if committed else "aborted").inc()


def analyzed(
    stage: str, counted: int, open_windows: int, remembered_order_ids: int, metrics: Metrics = METRICS,
) -> None:
    """analyze's batch: the orders it counted into windows, and its state's size after it."""
    metrics.orders_counted.labels(stage).inc(counted)
    metrics.open_windows.labels(stage).set(open_windows)
    metrics.remembered_order_ids.labels(stage).set(remembered_order_ids)


def store_rows(stage: str, rows: int, metrics: Metrics = METRICS) -> None:
    """Rows the sink's batch inserted or updated in the metrics store."""
    metrics.store_rows_written.labels(stage).inc(rows)


def latencies(orders_by_ms: Mapping[int, int], metrics: Metrics = METRICS) -> None:
    """End-to-end latencies the sink measured in a batch: orders per whole millisecond."""
    metrics.end_to_end_latency.observe({ms / 1000: orders for ms, orders in orders_by_ms.items()})


def reconciled(dag_id: str, discrepancies: int, at: float, metrics: Metrics = METRICS) -> None:
    """A run of ``dag_id`` reconciled at ``at`` (epoch seconds) with ``discrepancies`` found: its
    last success is ``at`` only when there were none."""
    metrics.reconcile_discrepancies.labels(dag_id).set(discrepancies)
    if not discrepancies:
        metrics.reconcile_last_success.labels(dag_id).set(at)
