"""What a batch of product-metrics partials changes in the store and its totals."""

from decimal import Decimal

from include.pipeline.domain.windows import Ledger, LedgerMark, Metric, Partial
from include.pipeline.store import changes as store_changes
from include.pipeline.store.changes import Totals

A = Partial(60, "prod-1", 0, 1, Decimal("10.50"))
A2 = Partial(60, "prod-1", 0, 2, Decimal("21.00"))
B = Partial(60, "prod-2", 0, 1, Decimal("10.50"))
ROW_A = Metric(60, 120, "prod-1", "Laptop", 1, Decimal("10.50"), Decimal("10.50"))
ROW_A2 = Metric(60, 120, "prod-1", "Laptop", 2, Decimal("21.00"), Decimal("10.50"))
ROW_B = Metric(60, 120, "prod-2", "Phone", 1, Decimal("10.50"), Decimal("10.50"))


def totals_of(rows, order_count, total_revenue, counted_revenue):
    return Totals(rows, order_count, Decimal(total_revenue), Decimal(counted_revenue))


def test_the_newest_record_per_partial_wins_and_moves_the_rows_and_totals():
    totals = totals_of(1, 1, "10.50", "10.50")
    changes = store_changes.changes([B, A2, B], {A.key: A}, {ROW_A.key: ROW_A}, totals)
    assert changes.partials == [B, A2]
    assert changes.upserts == [ROW_A2, ROW_B]  # in window order
    assert (changes.inserted, changes.updated) == (1, 1)
    assert totals == totals_of(2, 3, "31.50", "31.50")


def test_records_equal_to_their_partials_change_nothing():
    totals = totals_of(2, 3, "31.50", "31.50")
    rows = {ROW_A2.key: ROW_A2, ROW_B.key: ROW_B}
    changes = store_changes.changes([A2, B], {A2.key: A2, B.key: B}, rows, totals)
    assert (changes.partials, changes.upserts, changes.inserted, changes.updated) == ([], [], 0, 0)
    assert totals == totals_of(2, 3, "31.50", "31.50")


def test_totals_stay_exact_past_what_a_float_holds():
    huge = Partial(60, "prod-1", 0, 1, Decimal("9" * 40 + ".995"))
    rounded = Decimal("1" + "0" * 40 + ".00")  # half up to cents
    huge_row = Metric(60, 120, "prod-1", "Laptop", 1, rounded, rounded)
    totals = Totals()
    assert store_changes.changes([huge], {}, {}, totals).upserts == [huge_row]
    assert totals == Totals(1, 1, Decimal("1" + "0" * 40), Decimal("9" * 40 + ".995"))
    store_changes.changes([A], {huge.key: huge}, {huge_row.key: huge_row}, totals)
    assert totals == totals_of(1, 1, "10.50", "10.50")


def test_a_windows_row_adds_up_its_partitions_partials_exactly_and_rounds_once():
    # Each of the three rounds half up to 0.01 (0.03 together); their exact sum 0.016 is 0.02.
    p0 = Partial(60, "prod-1", 0, 1, Decimal("0.005"))
    p1 = Partial(60, "prod-1", 1, 1, Decimal("0.005"))
    p2 = Partial(60, "prod-1", 2, 1, Decimal("0.006"))
    row0 = Metric(60, 120, "prod-1", "Laptop", 1, Decimal("0.01"), Decimal("0.01"))
    totals = totals_of(1, 1, "0.01", "0.005")
    changes = store_changes.changes([p1, p2], {p0.key: p0}, {row0.key: row0}, totals)
    assert changes.partials == [p1, p2]
    # 0.016 / 3 = 0.00533...: 0.01
    assert changes.upserts == [Metric(60, 120, "prod-1", "Laptop", 3, Decimal("0.02"), Decimal("0.01"))]
    assert (changes.inserted, changes.updated) == (0, 1)
    assert totals == totals_of(1, 3, "0.02", "0.016")
    assert str(totals.counted_revenue) == "0.016"


def test_two_partials_of_half_a_cent_make_a_row_of_one_cent_not_two():
    p0 = Partial(60, "prod-1", 0, 1, Decimal("0.005"))
    p1 = Partial(60, "prod-1", 1, 1, Decimal("0.005"))
    totals = Totals()
    changes = store_changes.changes([p0, p1], {}, {}, totals)
    assert changes.upserts == [Metric(60, 120, "prod-1", "Laptop", 2, Decimal("0.01"), Decimal("0.01"))]
    assert (changes.inserted, changes.updated) == (1, 0)
    assert totals == totals_of(1, 2, "0.01", "0.010")


def test_a_newer_partial_of_a_partition_replaces_its_older_one_and_the_others_stay():
    legacy = Partial(60, "prod-1", -1, 3, Decimal("30.00"))  # a migrated row
    p0 = Partial(60, "prod-1", 0, 1, Decimal("0.005"))
    p0_newer = Partial(60, "prod-1", 0, 2, Decimal("0.010"))
    row = Metric(60, 120, "prod-1", "Laptop", 4, Decimal("30.01"), Decimal("7.50"))  # 30.005: 30.01
    totals = totals_of(1, 4, "30.01", "30.005")
    changes = store_changes.changes([p0, p0_newer], {legacy.key: legacy, p0.key: p0}, {row.key: row}, totals)
    assert changes.partials == [p0_newer]
    # 30.010 / 5 = 6.002
    assert changes.upserts == [Metric(60, 120, "prod-1", "Laptop", 5, Decimal("30.01"), Decimal("6.00"))]
    assert (changes.inserted, changes.updated) == (0, 1)
    assert totals == totals_of(1, 5, "30.01", "30.010")


def test_a_new_partial_that_leaves_its_windows_row_as_it_is_upserts_no_row():
    # replay republishes a window with a partial of every partition: 0 where it found none
    p0 = Partial(60, "prod-1", 0, 2, Decimal("3.00"))
    none_on_1 = Partial(60, "prod-1", 1, 0, Decimal(0))
    row = Metric(60, 120, "prod-1", "Laptop", 2, Decimal("3.00"), Decimal("1.50"))
    totals = totals_of(1, 2, "3.00", "3.00")
    changes = store_changes.changes([p0, none_on_1], {p0.key: p0}, {row.key: row}, totals)
    assert (changes.partials, changes.upserts, changes.inserted, changes.updated) == ([none_on_1], [], 0, 0)
    assert totals == totals_of(1, 2, "3.00", "3.00")


def test_totals_keep_the_newest_ledger_of_each_partition_and_add_them_up():
    totals = Totals()
    assert totals.ledger is None
    totals.note([None])
    assert (totals.ledgers, totals.ledger) == ({}, None)
    totals.note([
        LedgerMark(5, Decimal("0.005"), 0), LedgerMark(3, Decimal("1.10"), 1), None,
        LedgerMark(4, Decimal("9.99"), 0),  # an older batch's record, read later: not the newest
        LedgerMark(6, Decimal("0.015"), 0),
    ])
    assert totals.ledgers == {0: LedgerMark(6, Decimal("0.015"), 0), 1: LedgerMark(3, Decimal("1.10"), 1)}
    assert totals.ledger == Ledger(9, Decimal("1.115"))
    totals.note([LedgerMark(3, Decimal("2.00"), 1), LedgerMark(10, Decimal("20.00"), -1)])  # 3 is not newer
    assert totals.ledger == Ledger(19, Decimal("21.115"))
