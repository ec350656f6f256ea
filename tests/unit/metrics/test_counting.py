"""What the stages' calls count, read back through the registry, each value worked out by hand."""

import types

import pytest

from include.pipeline.kafka_io import errors
from include.pipeline.metrics import counting
from include.pipeline.metrics.catalogue import Metrics


@pytest.fixture
def metrics():
    return Metrics()


def value(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels)


def test_a_batch_counts_its_records_dead_letters_and_seconds(metrics):
    for seconds in (0.3, 0.02):
        counting.batch(
            "process", seconds, ("orders", 7), ("processed-orders", 4), {"invalid_json": 2, "empty": 1},
            metrics=metrics,
        )
    counting.batch("sink", 1.5, read=("product-metrics", 9), metrics=metrics)
    assert value(metrics, "kafka_pipeline_records_read_total", stage="process", topic="orders") == 14
    written = "kafka_pipeline_records_written_total"
    assert value(metrics, written, stage="process", topic="processed-orders") == 8
    assert value(metrics, "kafka_pipeline_dead_letters_total", stage="process", reason="invalid_json") == 4
    assert value(metrics, "kafka_pipeline_dead_letters_total", stage="process", reason="empty") == 2
    assert value(metrics, "kafka_pipeline_records_read_total", stage="sink", topic="product-metrics") == 9
    assert value(metrics, written, stage="sink", topic="product-metrics") is None
    assert value(metrics, "kafka_pipeline_batch_seconds_count", stage="process") == 2
    assert value(metrics, "kafka_pipeline_batch_seconds_sum", stage="process") == pytest.approx(0.32)
    assert value(metrics, "kafka_pipeline_batch_seconds_bucket", stage="process", le="0.01") == 0
    assert value(metrics, "kafka_pipeline_batch_seconds_bucket", stage="process", le="0.025") == 1
    assert value(metrics, "kafka_pipeline_batch_seconds_bucket", stage="process", le="0.5") == 2
    assert value(metrics, "kafka_pipeline_batch_seconds_bucket", stage="sink", le="1.0") == 0
    assert value(metrics, "kafka_pipeline_batch_seconds_bucket", stage="sink", le="2.5") == 1


def test_lag_is_each_partitions_latest(metrics):
    counting.lag("analyze", "processed-orders", {0: 120, 1: 0}, metrics=metrics)
    counting.lag("analyze", "processed-orders", {0: 20}, metrics=metrics)
    lag = "kafka_pipeline_consumer_lag_records"
    assert value(metrics, lag, stage="analyze", topic="processed-orders", partition="0") == 20
    assert value(metrics, lag, stage="analyze", topic="processed-orders", partition="1") == 0


def test_transactions_by_outcome(metrics):
    for committed in (True, True, False, True):
        counting.transaction("generate", committed, metrics=metrics)
    assert value(metrics, "kafka_pipeline_transactions_total", stage="generate", outcome="committed") == 3
    assert value(metrics, "kafka_pipeline_transactions_total", stage="generate", outcome="aborted") == 1


def test_analyze_counts_orders_and_keeps_its_states_size(metrics):
    counting.analyzed("analyze", 10, 4, 10, metrics=metrics)
    counting.analyzed("analyze", 5, 6, 15, metrics=metrics)
    counting.analyzed("analyze", 0, 2, 9, metrics=metrics)  # the run's end: what the expiry left
    assert value(metrics, "kafka_pipeline_orders_counted_total", stage="analyze") == 15
    assert value(metrics, "kafka_pipeline_open_windows", stage="analyze") == 2
    assert value(metrics, "kafka_pipeline_remembered_order_ids", stage="analyze") == 9


def test_store_rows(metrics):
    counting.store_rows("sink", 3, metrics=metrics)
    counting.store_rows("sink", 0, metrics=metrics)
    counting.store_rows("sink", 5, metrics=metrics)
    assert value(metrics, "kafka_pipeline_store_rows_written_total", stage="sink") == 8


def test_latencies_observe_each_order_once_per_millisecond_count(metrics):
    counting.latencies({40: 3, 1000: 2}, metrics=metrics)
    counting.latencies({1001: 1, 75_000: 1}, metrics=metrics)
    name = "kafka_pipeline_end_to_end_latency_seconds"
    assert value(metrics, f"{name}_bucket", le="0.05") == 3
    assert value(metrics, f"{name}_bucket", le="0.75") == 3
    assert value(metrics, f"{name}_bucket", le="1.0") == 5  # a bucket holds its bound
    assert value(metrics, f"{name}_bucket", le="1.5") == 6
    assert value(metrics, f"{name}_bucket", le="60.0") == 6
    assert value(metrics, f"{name}_bucket", le="+Inf") == 7
    assert value(metrics, f"{name}_count") == 7
    assert value(metrics, f"{name}_sum") == pytest.approx(0.12 + 2.0 + 1.001 + 75.0)


def test_a_failed_reconcile_sets_its_discrepancies_and_keeps_the_last_success(metrics):
    counting.reconciled("kafka_pipeline", 0, 1767607200.0, metrics=metrics)
    counting.reconciled("kafka_pipeline", 2, 1767610800.0, metrics=metrics)
    counting.reconciled("kafka_pipeline_on_orders", 0, 1767614400.0, metrics=metrics)
    last = "kafka_pipeline_reconcile_last_success_timestamp_seconds"
    found = "kafka_pipeline_reconcile_discrepancies"
    assert value(metrics, last, dag_id="kafka_pipeline") == 1767607200.0
    assert value(metrics, found, dag_id="kafka_pipeline") == 2
    assert value(metrics, last, dag_id="kafka_pipeline_on_orders") == 1767614400.0
    assert value(metrics, found, dag_id="kafka_pipeline_on_orders") == 0


def test_unavailable_seconds_grow_while_an_outage_lasts_each_stage_its_own(metrics, monkeypatch):
    now = [100.0]
    monkeypatch.setattr(errors, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    outage = errors.Outage()
    unavailable = "kafka_pipeline_kafka_unavailable_seconds_total"
    counting.stage_started("process", outage.seconds, metrics=metrics)
    assert value(metrics, unavailable, stage="process") == 0
    outage.began("down")
    now[0] = 112.5
    assert value(metrics, unavailable, stage="process") == 12.5  # read as it goes on
    now[0] = 130.0
    assert value(metrics, unavailable, stage="process") == 30.0
    outage.ended()
    now[0] = 200.0
    assert value(metrics, unavailable, stage="process") == 30.0
    counting.stage_started("analyze", outage.seconds, metrics=metrics)  # the process's next stage
    outage.began("down again")
    now[0] = 204.0
    assert value(metrics, unavailable, stage="process") == 30.0
    assert value(metrics, unavailable, stage="analyze") == 4.0
    assert outage.seconds() == 34.0
