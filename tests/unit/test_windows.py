from decimal import Decimal

import pytest

from include.pipeline import codec
from include.pipeline.windows import (
    Aggregate,
    LedgerMark,
    Metric,
    TumblingWindows,
    decode_metric,
    ledger_header,
    ledger_of,
    metric,
)
from tests.factories import order


def test_orders_fall_into_one_minute_windows_per_product():
    windows = TumblingWindows()
    windows.add_all([
        order("o", "2026-01-05T10:00:00Z", "10.005", "prod-1"),
        order("o", "2026-01-05T10:00:59.999Z", "0.10", "prod-1"),
        order("o", "2026-01-05T10:01:00Z", "5", "prod-1"),
        order("o", "2026-01-05T11:00:10+01:00", "1.00", "prod-2"),
    ])
    assert windows.aggregates == {
        (1767607200, "prod-1"): Aggregate(2, Decimal("10.105")),
        (1767607260, "prod-1"): Aggregate(1, Decimal("5")),
        (1767607200, "prod-2"): Aggregate(1, Decimal("1.00")),
    }
    assert windows.take_changed() == [  # with the totals in cents before the change
        ((1767607200, "prod-1"), Decimal(0)), ((1767607200, "prod-2"), Decimal(0)),
        ((1767607260, "prod-1"), Decimal(0)),
    ]
    windows.add_all([order("o", "2026-01-05T10:00:01Z", "1", "prod-1")])
    assert windows.take_changed() == [((1767607200, "prod-1"), Decimal("10.11"))]
    assert windows.take_changed() == []


def test_metric_record_rounds_half_up_only_at_the_end():
    record = metric((1767607200, "prod-1"), Aggregate(2, Decimal("10.105")))
    assert record == Metric(
        window_start=1767607200,
        window_end=1767607260,
        product_id="prod-1",
        product_name="Laptop",
        order_count=2,
        total_revenue=Decimal("10.11"),
        avg_order_value=Decimal("5.05"),
    )
    assert codec.encode(record) == (
        b'{"window_start":1767607200,"window_end":1767607260,"product_id":"prod-1","product_name":"Laptop",'
        b'"order_count":2,"total_revenue":10.11,"avg_order_value":5.05}'
    )


def test_a_metric_record_decodes_to_one_spelling_of_its_amounts():
    raw = (b'{"window_start":60,"window_end":120,"product_id":"prod-1","product_name":"Laptop",'
           b'"order_count":2,"total_revenue":21.5,"avg_order_value":10.75}')
    record = decode_metric(raw)
    assert (record.total_revenue, record.avg_order_value) == (Decimal("21.50"), Decimal("10.75"))
    assert str(record.total_revenue) == "21.50"
    assert codec.encode(record) == raw.replace(b"21.5,", b"21.50,")


@pytest.mark.parametrize(("raw", "problem"), [
    (None, "Expected `object`, got `null`"),
    (b"{", "not a metrics record"),
    (b'{"window_start": 60}', "missing required field `window_end`"),
    (b'{"window_start":60,"window_end":120,"product_id":"p","product_name":"n","order_count":"2",'
     b'"total_revenue":1,"avg_order_value":1}', "Expected `int`, got `str`"),
    (b'{"window_start":60,"window_end":120,"product_id":"p","product_name":"n","order_count":2,'
     b'"total_revenue":1.005,"avg_order_value":1}',
     "total_revenue must be a non-negative amount in cents, got 1.005"),
    (b'{"window_start":60,"window_end":120,"product_id":"p","product_name":"n","order_count":2,'
     b'"total_revenue":1,"avg_order_value":-1}',
     "avg_order_value must be a non-negative amount in cents, got -1"),
])
def test_a_record_that_breaks_the_contract_says_how(raw, problem):
    with pytest.raises(ValueError, match="not a metrics record") as error:
        decode_metric(raw)
    assert problem in str(error.value)


def test_the_ledger_header_round_trips_and_a_record_without_one_has_none():
    header = ledger_header(LedgerMark(1890, Decimal("40213.70")))
    assert header == ("ledger", b'{"count":1890,"revenue_cents":"40213.70"}')
    assert ledger_of([("origins", b"[[1767607500123,2]]"), header]) == LedgerMark(1890, Decimal("40213.70"))
    assert str(ledger_of([header]).revenue_cents) == "40213.70"
    assert ledger_of([("origins", b"[]")]) is None
    assert ledger_of(None) is None


@pytest.mark.parametrize("value", [None, b"{", b'{"count": 3}', b'{"count": "3", "revenue_cents": "1.00"}'])
def test_a_bad_ledger_header_says_so(value):
    with pytest.raises(ValueError, match="not a ledger header"):
        ledger_of([("ledger", value)])
