"""What a batch of product-metrics records changes in the store and its totals."""

from decimal import Decimal

from include.pipeline import store_changes
from include.pipeline.windows import Metric

A = Metric(60, 120, "prod-1", "Laptop", 1, Decimal("10.50"), Decimal("10.50"))
A2 = Metric(60, 120, "prod-1", "Laptop", 2, Decimal("21.00"), Decimal("10.50"))
B = Metric(60, 120, "prod-2", "Phone", 1, Decimal("10.50"), Decimal("10.50"))


def test_the_newest_record_per_window_wins_and_moves_the_totals():
    totals = store_changes.Totals(rows=1, order_count=1, total_revenue=Decimal("10.50"))
    changes = store_changes.changes([B, A2, B], {A.key: A}, totals)
    assert changes.upserts == [B, A2]
    assert (changes.inserted, changes.updated) == (1, 1)
    assert totals == store_changes.Totals(rows=2, order_count=3, total_revenue=Decimal("31.50"))


def test_records_equal_to_their_rows_change_nothing():
    totals = store_changes.Totals(rows=2, order_count=3, total_revenue=Decimal("31.50"))
    changes = store_changes.changes([A2, B], {A2.key: A2, B.key: B}, totals)
    assert (changes.upserts, changes.inserted, changes.updated) == ([], 0, 0)
    assert totals == store_changes.Totals(rows=2, order_count=3, total_revenue=Decimal("31.50"))


def test_totals_stay_exact_past_what_a_float_holds():
    huge = Metric(60, 120, "prod-1", "Laptop", 1, Decimal("9" * 40 + ".99"), Decimal("9" * 40 + ".99"))
    totals = store_changes.Totals()
    store_changes.changes([huge], {}, totals)
    store_changes.changes([A], {huge.key: huge}, totals)
    assert totals == store_changes.Totals(rows=1, order_count=1, total_revenue=Decimal("10.50"))
