from decimal import Decimal

import pytest

from include.pipeline.domain.analyzer import VERDICTS, Analyzer
from include.pipeline.domain.dedup import fingerprint
from include.pipeline.domain.order_columns import OrderColumns
from include.pipeline.domain.windows import Ledger
from tests.harness.factories import order

W = 1767607200  # 2026-01-05T10:00:00Z




def offer_batch(analyzer, orders):
    return [VERDICTS[verdict] for verdict in analyzer.offer_batch(OrderColumns.of(orders))]


def restore(records):
    restored = Analyzer.create(3600, 7200)
    for key, value in records:
        restored.restore(key, value)
    for key, value in records:
        restored.restore_ids(key, value)
    return restored


def remembered(analyzer, *order_ids):
    return analyzer.seen.contains([fingerprint(order_id) for order_id in order_ids]).tolist()


def segment_key(records):
    [key] = [key for key, _ in records if key.startswith(b"orders:")]
    return key


def test_an_order_id_counts_once():
    analyzer = Analyzer.create(3600, 86400)
    assert analyzer.offer(order("a", timestamp="2026-01-05T10:00:00Z")) is None
    assert analyzer.offer(order("a", "prod-1", "99", "2026-01-05T10:00:00Z")) == "duplicate"
    assert analyzer.ledger == Ledger(1, Decimal("10.00"))


def test_late_means_the_window_ended_more_than_the_grace_period_before_the_watermark():
    analyzer = Analyzer.create(3600, 86400)
    assert analyzer.offer(order("new", timestamp="2026-01-05T12:00:00Z")) is None  # watermark 12:00:00
    # window [10:59, 11:00) ended exactly 1 h before: still in grace
    assert analyzer.offer(order("edge", timestamp="2026-01-05T10:59:59Z")) is None
    # window [10:58, 10:59) ended 1 h 1 min before: late
    assert analyzer.offer(order("old", timestamp="2026-01-05T10:58:59.999Z")) == "late"
    assert analyzer.offer(order("newer", timestamp="2026-01-05T12:00:30Z")) is None
    # the watermark moved on
    assert analyzer.offer(order("edge2", timestamp="2026-01-05T10:59:30Z")) == "late"
    assert analyzer.watermark == (W + 2 * 3600 + 30) * 1_000_000


def test_a_duplicate_is_a_duplicate_even_when_it_is_also_late():
    analyzer = Analyzer.create(60, 86400)
    analyzer.offer(order("a", timestamp="2026-01-05T10:00:00Z"))
    analyzer.offer(order("b", timestamp="2026-01-05T12:00:00Z"))
    assert analyzer.offer(order("a", timestamp="2026-01-05T10:00:00Z")) == "duplicate"


def test_changes_carry_new_totals_ledger_and_state_that_restores_the_same_analyzer():
    analyzer = Analyzer.create(3600, 86400)
    for o in [order("a", "prod-1", "0.005", "2026-01-05T10:00:01Z"),
              order("b", "prod-1", "0.005", "2026-01-05T10:00:02Z"),
              order("c", "prod-2", "1.10", "2026-01-05T10:01:00Z")]:
        analyzer.offer(o)
    windows, state = analyzer.take_changes()
    assert [(key, a.count, a.total) for key, a in windows] == [
        ((W, "prod-1"), 2, Decimal("0.010")), ((W + 60, "prod-2"), 1, Decimal("1.10")),
    ]
    assert analyzer.ledger == Ledger(3, Decimal("1.110"))
    restored = restore(state)
    assert (restored.windows.aggregates, restored.watermark, restored.ledger) == (
        analyzer.windows.aggregates, analyzer.watermark, analyzer.ledger,
    )
    assert remembered(restored, "a", "b", "c", "d") == remembered(analyzer, "a", "b", "c", "d") == (
        [True] * 3 + [False]
    )
    assert [key for key, _ in state if key.startswith(b"orders:")] == [key for key, _ in state][-3:-2]
    assert analyzer.take_changes()[0] == []


def test_the_ledger_keeps_the_exact_revenue_however_the_windows_round():
    analyzer = Analyzer.create(3600, 86400)
    analyzer.offer(order("a", "prod-1", "0.004", "2026-01-05T10:00:01Z"))
    windows, _ = analyzer.take_changes()
    assert [(key, a.total) for key, a in windows] == [((W, "prod-1"), Decimal("0.004"))]
    assert analyzer.ledger == Ledger(1, Decimal("0.004"))
    analyzer.offer(order("b", "prod-1", "0.001", "2026-01-05T10:00:02Z"))
    windows, _ = analyzer.take_changes()
    assert [(key, a.total) for key, a in windows] == [((W, "prod-1"), Decimal("0.005"))]
    assert analyzer.ledger == Ledger(2, Decimal("0.005"))


def test_expire_forgets_closed_windows_and_old_ids_with_tombstones():
    analyzer = Analyzer.create(3600, 7200)
    analyzer.offer(order("a", timestamp="2026-01-05T10:00:00Z"))
    _, first = analyzer.take_changes()
    analyzer.offer(order("b", timestamp="2026-01-05T10:40:00Z"))
    analyzer.offer(order("c", timestamp="2026-01-05T12:30:00Z"))
    _, second = analyzer.take_changes()
    tombstones = analyzer.expire()
    assert tombstones == [
        (b"window:1767607200:prod-1", None),  # ended 10:01, before 12:30 - 1 h
        (b"window:1767609600:prod-1", None),  # ended 10:41, likewise
        (segment_key(first), None),  # holds only a: 10:00 is before 12:30 - 2 h
    ]
    assert remembered(analyzer, "a", "b", "c") == [False, True, True]
    restored = restore(first + second + tombstones)
    assert (restored.windows.aggregates.keys(), restored.ledger.count) == ({(W + 9000, "prod-1")}, 3)
    assert remembered(restored, "a", "b", "c") == [False, True, True]


def test_an_id_past_the_horizon_is_forgotten_even_while_its_segment_lives_on():
    analyzer = Analyzer.create(3600, 7200)
    analyzer.offer(order("b", timestamp="2026-01-05T10:20:00Z"))
    analyzer.offer(order("c", timestamp="2026-01-05T12:30:00Z"))
    _, state = analyzer.take_changes()
    assert analyzer.expire() == [(b"window:1767608400:prod-1", None)]  # the segment still holds c
    assert remembered(analyzer, "b", "c") == [False, True]
    restored = restore(state)  # a restart: the stage expires right after restoring
    assert remembered(restored, "b", "c") == [True, True]
    assert restored.expire() == [(b"window:1767608400:prod-1", None)]
    assert remembered(restored, "b", "c") == [False, True]
    assert restored.offer(order("b", timestamp="2026-01-05T12:31:00Z")) is None  # forgotten, and not late


def test_duplicates_are_found_within_a_batch_and_across_batches():
    analyzer = Analyzer.create(3600, 86400)
    batch = [order("a", timestamp="2026-01-05T10:00:00Z"), order("b", timestamp="2026-01-05T10:00:01Z"),
             order("a", timestamp="2026-01-05T10:00:02Z")]
    assert offer_batch(analyzer, batch) == [None, None, "duplicate"]
    analyzer.take_changes()
    assert offer_batch(
        analyzer, [order("b", timestamp="2026-01-05T10:00:03Z"), order("c", timestamp="2026-01-05T10:00:03Z")]
    ) == ["duplicate", None]
    assert analyzer.ledger.count == 3


def test_a_horizon_shorter_than_a_window_and_the_grace_period_is_refused():
    with pytest.raises(ValueError, match=r"grace_seconds \+ 60 <= dedup_horizon_seconds"):
        Analyzer.create(3600, 3659)


def test_with_the_shortest_horizon_an_order_forgotten_is_already_late():
    analyzer = Analyzer.create(3600, 3660)
    analyzer.offer(order("a", timestamp="2026-01-05T10:00:30Z"))
    analyzer.offer(order("b", timestamp="2026-01-05T11:00:31Z"))
    analyzer.expire()  # a run's end
    assert analyzer.offer(order("a", timestamp="2026-01-05T10:00:30Z")) == "duplicate"
