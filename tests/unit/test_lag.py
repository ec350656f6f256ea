import pytest

from include.pipeline.lag import GAVE_UP, MAX_WAIT, MIN_RECORDS, Backlog, LagReport, lag

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


def test_fires_at_min_records_and_not_again_for_the_same_records():
    backlog = Backlog(min_records=100)
    assert backlog.observe(0, {("orders", 0): 99}, {}, {}) is None
    assert backlog.observe(1, {("orders", 0): 100}, {}, {}) == LagReport(100, {"orders": 100}, MIN_RECORDS)
    # The run it started has not committed yet: the same backlog does not fire twice.
    assert backlog.observe(2, {("orders", 0): 150}, {}, {}) is None
    assert backlog.observe(3, {("orders", 0): 200}, {("orders", 0): 100}, {}) == LagReport(100, {"orders": 100}, MIN_RECORDS)


def test_fires_after_max_wait_with_any_lag_and_the_clock_restarts_at_zero_lag():
    backlog = Backlog(min_records=1000, max_wait_seconds=300)
    assert backlog.observe(0, {("orders", 0): 5}, {}, {}) is None
    assert backlog.observe(299, {("orders", 0): 6}, {}, {}) is None
    assert backlog.observe(300, {("orders", 0): 6}, {}, {}) == LagReport(6, {"orders": 6}, MAX_WAIT)
    assert backlog.observe(301, {("orders", 0): 6}, {}, {}) is None  # signalled
    assert backlog.observe(400, {("orders", 0): 6}, {("orders", 0): 6}, {}) is None  # worked through
    assert backlog.observe(500, {("orders", 0): 7}, {("orders", 0): 6}, {}) is None  # the clock starts again
    assert backlog.observe(799, {("orders", 0): 7}, {("orders", 0): 6}, {}) is None
    assert backlog.observe(800, {("orders", 0): 7}, {("orders", 0): 6}, {}) == LagReport(1, {"orders": 1}, MAX_WAIT)


def test_without_max_wait_a_small_backlog_waits_for_more():
    backlog = Backlog(min_records=10)
    assert backlog.observe(0, {("orders", 0): 9}, {}, {}) is None
    assert backlog.observe(10**6, {("orders", 0): 9}, {}, {}) is None


def test_min_records_must_be_positive():
    with pytest.raises(ValueError, match="min_records must be at least 1, got 0"):
        Backlog(min_records=0)


def test_the_report_is_the_trigger_payload_and_back():
    report = LagReport(3, {"orders": 2, "product-metrics": 1}, GAVE_UP)
    assert report.to_payload() == {"records": 3, "topics": {"orders": 2, "product-metrics": 1}, "reason": "gave_up"}
    assert LagReport.from_payload(report.to_payload()) == report
