"""order_columns: a batch decoded in bulk, the values the bulk path cannot decide taken by the
per-record parser, in the batch's order; exact totals per group."""

from decimal import Decimal

import numpy as np

from include.pipeline.domain import order_columns
from include.pipeline.domain.order_columns import OrderColumns, window_code, window_key
from tests.harness.factories import order, order_value

W = 1767607200  # 2026-01-05T10:00:00Z


def test_bulk_and_per_record_rows_come_out_in_the_batchs_order_with_the_parsers_rejections():
    values = [
        order_value("a"),
        order_value("b", amount="1.005"),  # three decimals: the per-record path, an exact amount
        None,
        order_value("c", timestamp="2026-01-05 10:01:00Z"),  # a space: the per-record path
        order_value("d", coupon="X"),  # an extra field: the per-record path
        order_value("e", product_id="prod-9"),
        order_value("f", amount="2.5"),
    ]
    columns, rejected = order_columns.decode(values)
    assert columns.index.tolist() == [0, 1, 3, 4, 6]
    assert columns.order_ids == [b"a", b"b", b"c", b"d", b"f"]
    assert columns.cents.tolist() == [1000, 0, 1000, 1000, 250]
    assert columns.exact == {1: Decimal("1.005")}
    assert columns.event_us.tolist() == [(W + 30) * 10**6, (W + 30) * 10**6, (W + 60) * 10**6,
                                         (W + 30) * 10**6, (W + 30) * 10**6]
    assert [(at, why.reason) for at, why in rejected] == [(2, "tombstone"), (5, "unknown_product")]
    each, rejected_each = order_columns.decode_each(values)
    assert each.index.tolist() == columns.index.tolist() and rejected_each == rejected


def test_totals_add_each_group_exactly_with_the_smallest_exponent_of_its_amounts():
    orders = [order("a", "prod-1", "5", "2026-01-05T10:00:00Z"),
              order("b", "prod-1", "2.5", "2026-01-05T10:00:01Z"),
              order("c", "prod-1", "1.005", "2026-01-05T10:00:02Z"),
              order("d", "prod-1", "1E+2", "2026-01-05T10:00:03Z"),
              order("e", "prod-1", "0.10", "2026-01-05T10:00:04Z")]
    columns = OrderColumns.of(orders)
    totals = columns.totals(np.array([0, 0, 1, 2, 1]), 3)
    assert [str(total) for total in totals] == ["7.5", "1.105", "1E+2"]
    assert totals == [Decimal("5") + Decimal("2.5"), Decimal("1.005") + Decimal("0.10"), Decimal("1E+2")]


def test_a_window_code_is_its_window_and_product_in_one_integer():
    orders = OrderColumns.of([order("a", timestamp="2026-01-05T10:00:59Z", product_id="prod-3"),
                              order("b", timestamp="1969-12-31T23:59:30Z", product_id="prod-5")])
    assert orders.window_start.tolist() == [W, -60]
    codes = orders.window_codes.tolist()
    assert [window_key(code) for code in codes] == [(W, "prod-3"), (-60, "prod-5")]
    assert [window_code(window_key(code)) for code in codes] == codes
