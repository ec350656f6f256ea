import json

import msgspec
import pytest

from include.pipeline.kafka_io.lag import (
    GAVE_UP,
    MAX_WAIT,
    MIN_RECORDS,
    Backlog,
    LagReport,
    Memory,
    lag,
    positions,
)

ENDS = {("orders", 0): 100, ("orders", 1): 50, ("processed-orders", 0): 7}
STARTS = {("orders", 0): 0, ("orders", 1): 10, ("processed-orders", 0): 0}


def test_lag_is_end_minus_committed_per_partition_summed_per_topic():
    committed = {("orders", 0): 90, ("orders", 1): 50, ("processed-orders", 0): 7}
    assert lag(ENDS, committed, STARTS) == {"orders": 10, "processed-orders": 0}


def test_a_group_without_committed_offsets_lags_from_the_log_start():
    assert lag(ENDS, {}, STARTS) == {"orders": 140, "processed-orders": 7}


def test_what_was_signalled_is_not_lag_again_unless_the_topic_was_recreated():
    committed = {("orders", 0): 0, ("orders", 1): 10}
    assert lag(ENDS, committed, STARTS, since={("orders", 0): 80}) == {"orders": 60, "processed-orders": 7}
    # An offset past the end: the topic is not the one that was signalled.
    assert lag(ENDS, committed, STARTS, since={("orders", 0): 500}) == {"orders": 140, "processed-orders": 7}


def test_positions_add_up_the_end_offsets_and_the_groups_per_topic():
    committed = {("orders", 0): 90, ("processed-orders", 0): 7}  # none on orders 1: its log start
    assert positions(ENDS, committed, STARTS) == {"orders": (150, 100), "processed-orders": (7, 7)}
    assert positions({}, {}, {}) == {}


def test_fires_at_min_records_and_not_again_for_the_same_records():
    backlog = Backlog(min_records=100)
    assert backlog.observe(0, {("orders", 0): 99}, {}, {}) is None
    assert backlog.observe(1, {("orders", 0): 100}, {}, {}) == LagReport(100, {"orders": 100}, MIN_RECORDS)
    # The run it started has not committed yet: the same backlog does not fire twice.
    assert backlog.observe(2, {("orders", 0): 150}, {}, {}) is None
    assert backlog.observe(3, {("orders", 0): 200}, {("orders", 0): 100}, {}) == LagReport(
        100, {"orders": 100}, MIN_RECORDS
    )


def test_fires_after_max_wait_with_any_lag_and_the_clock_restarts_at_zero_lag():
    backlog = Backlog(min_records=1000, max_wait_seconds=300)
    assert backlog.observe(0, {("orders", 0): 5}, {}, {}) is None
    assert backlog.observe(299, {("orders", 0): 6}, {}, {}) is None
    assert backlog.observe(300, {("orders", 0): 6}, {}, {}) == LagReport(6, {"orders": 6}, MAX_WAIT)
    assert backlog.observe(301, {("orders", 0): 6}, {}, {}) is None  # signalled
    assert backlog.observe(400, {("orders", 0): 6}, {("orders", 0): 6}, {}) is None  # worked through
    assert backlog.observe(500, {("orders", 0): 7}, {("orders", 0): 6}, {}) is None  # the clock starts again
    assert backlog.observe(799, {("orders", 0): 7}, {("orders", 0): 6}, {}) is None
    assert backlog.observe(800, {("orders", 0): 7}, {("orders", 0): 6}, {}) == LagReport(
        1, {"orders": 1}, MAX_WAIT
    )


def test_without_max_wait_a_small_backlog_waits_for_more():
    backlog = Backlog(min_records=10)
    assert backlog.observe(0, {("orders", 0): 9}, {}, {}) is None
    assert backlog.observe(10**6, {("orders", 0): 9}, {}, {}) is None


def test_min_records_must_be_positive():
    with pytest.raises(ValueError, match="min_records must be at least 1, got 0"):
        Backlog(min_records=0)


def test_the_report_is_the_trigger_payload_and_back():
    report = LagReport(3, {"orders": 2, "product-metrics": 1}, GAVE_UP)
    assert report.to_payload() == {
        "records": 3, "topics": {"orders": 2, "product-metrics": 1}, "reason": "gave_up"
    }
    assert LagReport.from_payload(report.to_payload()) == report


def test_the_memory_of_what_was_signalled_is_json_and_back():
    backlog = Backlog(min_records=10)
    assert backlog.memory() == Memory({})
    backlog.observe(0, {("orders", 1): 50, ("orders", 0): 100, ("processed-orders", 0): 7}, {}, {})
    memory = backlog.memory()
    payload = json.loads(json.dumps(memory.to_payload()))  # as the asset's state store keeps it
    assert payload == {"signalled": {"orders": {"0": 100, "1": 50}, "processed-orders": {"0": 7}}}
    assert Memory.from_payload(payload) == memory
    restored = Backlog(min_records=10)
    restored.restore(Memory.from_payload(payload))
    assert restored.signalled == backlog.signalled
    with pytest.raises(msgspec.ValidationError):
        Memory.from_payload({"signalled": {"orders": {"zero": 100}}})


def test_a_restored_backlog_does_not_fire_for_what_was_signalled_before_the_restart():
    backlog = Backlog(min_records=100)
    backlog.restore(Memory({"orders": {0: 150}}))
    # The run the earlier event started has not committed yet.
    assert backlog.observe(0, {("orders", 0): 150}, {}, {}) is None
    assert backlog.observe(1, {("orders", 0): 249}, {}, {}) is None
    assert backlog.observe(2, {("orders", 0): 250}, {}, {}) == LagReport(100, {"orders": 100}, MIN_RECORDS)
    assert backlog.memory() == Memory({"orders": {0: 250}})


def test_a_restored_offset_beyond_the_end_is_a_recreated_topic_and_its_records_count():
    backlog = Backlog(min_records=100)
    backlog.restore(Memory({"orders": {0: 500}}))
    assert backlog.observe(0, {("orders", 0): 120}, {}, {}) == LagReport(120, {"orders": 120}, MIN_RECORDS)
