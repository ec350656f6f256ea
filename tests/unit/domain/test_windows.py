from decimal import Decimal

import pytest

from include.pipeline.domain import codec
from include.pipeline.domain.windows import (
    LEGACY,
    Aggregate,
    Ledger,
    LedgerMark,
    Metric,
    Partial,
    TumblingWindows,
    combined,
    decode_metric,
    decode_partial,
    ledger_header,
    ledger_of,
    metric,
    partial_key_bytes,
)
from tests.harness.factories import order


def test_orders_fall_into_one_minute_windows_per_product():
    windows = TumblingWindows()
    windows.add_all([
        order("o", "prod-1", "10.005", "2026-01-05T10:00:00Z"),
        order("o", "prod-1", "0.10", "2026-01-05T10:00:59.999Z"),
        order("o", "prod-1", "5", "2026-01-05T10:01:00Z"),
        order("o", "prod-2", "1.00", "2026-01-05T11:00:10+01:00"),
    ])
    assert windows.aggregates == {
        (1767607200, "prod-1"): Aggregate(2, Decimal("10.105")),
        (1767607260, "prod-1"): Aggregate(1, Decimal("5")),
        (1767607200, "prod-2"): Aggregate(1, Decimal("1.00")),
    }
    assert windows.take_changed() == [  # in key order
        (1767607200, "prod-1"), (1767607200, "prod-2"), (1767607260, "prod-1"),
    ]
    windows.add_all([order("o", "prod-1", "1", "2026-01-05T10:00:01Z")])
    assert windows.take_changed() == [(1767607200, "prod-1")]
    assert windows.aggregates[1767607200, "prod-1"] == Aggregate(3, Decimal("11.105"))
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
    header = ledger_header(LedgerMark(1890, Decimal("40213.705"), 2))
    assert header == ("ledger", b'{"count":1890,"revenue":"40213.705","partition":2}')
    assert ledger_of([("origins", b"[[1767607500123,2]]"), header]) == (
        LedgerMark(1890, Decimal("40213.705"), 2)
    )
    assert str(ledger_of([header]).revenue) == "40213.705"
    assert ledger_of([("origins", b"[]")]) is None
    assert ledger_of(None) is None


def test_a_ledger_header_of_before_partitions_reads_as_the_legacy_partitions():
    old = ("ledger", b'{"count":1890,"revenue_cents":"40213.70"}')
    assert ledger_of([old]) == LedgerMark(1890, Decimal("40213.70"), -1)
    assert LEGACY == -1
    assert ledger_of([("ledger", b'{"count":4,"revenue":"1.005"}')]) == LedgerMark(4, Decimal("1.005"), -1)


@pytest.mark.parametrize("value", [
    None, b"{", b'{"count": 3}', b'{"count": "3", "revenue": "1.00"}',
    b'{"count": "3", "revenue_cents": "1.00"}',
    b'{"count": 3, "revenue": "1.00", "partition": "0"}',
])
def test_a_bad_ledger_header_says_so(value):
    with pytest.raises(ValueError, match="not a ledger header"):
        ledger_of([("ledger", value)])


def test_a_ledger_marks_its_partition_and_adds_up_with_another_exactly():
    ledger = Ledger(2, Decimal("0.005"))
    assert ledger.mark(3) == LedgerMark(2, Decimal("0.005"), 3)
    assert ledger.plus(Ledger(1, Decimal("0.005"))) == Ledger(3, Decimal("0.010"))
    assert ledger == Ledger(2, Decimal("0.005"))  # plus makes a new one
    assert Ledger().plus(Ledger()) == Ledger(0, Decimal(0))


def test_a_partial_is_keyed_by_window_product_and_partition():
    partial = Partial(1767607200, "prod-2", 3, 2, Decimal("0.005"))
    assert (partial.window, partial.key) == ((1767607200, "prod-2"), (1767607200, "prod-2", 3))
    assert partial_key_bytes(partial.key) == b"1767607200:prod-2@3"
    assert partial_key_bytes((1767607200, "prod-2", LEGACY)) == b"1767607200:prod-2@-1"
    assert codec.encode(partial) == (
        b'{"window_start":1767607200,"product_id":"prod-2","partition":3,"order_count":2,"total":0.005}'
    )
    assert decode_partial(codec.encode(partial)) == partial


def test_a_partial_record_decodes_with_its_exact_total():
    raw = b'{"window_start":60,"product_id":"prod-1","partition":2,"order_count":3,"total":"10.105"}'
    assert decode_partial(raw) == Partial(60, "prod-1", 2, 3, Decimal("10.105"))
    assert str(decode_partial(raw).total) == "10.105"
    legacy = b'{"window_start":60,"product_id":"prod-1","partition":-1,"order_count":0,"total":"0"}'
    assert decode_partial(legacy) == Partial(60, "prod-1", -1, 0, Decimal(0))


def test_a_metric_record_of_before_partials_decodes_as_the_legacy_partial_of_its_window():
    raw = (b'{"window_start":60,"window_end":120,"product_id":"prod-1","product_name":"Laptop",'
           b'"order_count":2,"total_revenue":21.5,"avg_order_value":10.75}')
    partial = decode_partial(raw)
    assert partial == Partial(60, "prod-1", -1, 2, Decimal("21.50"))
    assert str(partial.total) == "21.50"


@pytest.mark.parametrize(("raw", "problem"), [
    (None, "Expected `object`, got `null`"),
    (b"{", "not a metrics record"),
    (b'{"window_start": 60}', "missing required field"),
    (b'{"window_start":60,"product_id":"prod-1","partition":0,"order_count":"2","total":"1"}',
     "Expected `int`, got `str`"),
    (b'{"window_start":60,"product_id":"prod-9","partition":0,"order_count":2,"total":"1"}',
     "product_id='prod-9'"),
    (b'{"window_start":60,"product_id":"prod-1","partition":-2,"order_count":2,"total":"1"}',
     "partition=-2"),
    (b'{"window_start":60,"product_id":"prod-1","partition":0,"order_count":-1,"total":"1"}',
     "order_count=-1"),
    (b'{"window_start":60,"product_id":"prod-1","partition":0,"order_count":1,"total":"-0.01"}',
     "total must be a non-negative amount, got -0.01"),
    (b'{"window_start":60,"product_id":"prod-1","partition":0,"order_count":1,"total":"NaN"}',
     "total must be a non-negative amount, got NaN"),
    # an old record that breaks its own contract is no partial either
    (b'{"window_start":60,"window_end":120,"product_id":"prod-1","product_name":"Laptop","order_count":2,'
     b'"total_revenue":1.005,"avg_order_value":1}', "not a metrics record"),
])
def test_a_partial_record_that_breaks_the_contract_says_how(raw, problem):
    with pytest.raises(ValueError, match="not a metrics record") as error:
        decode_partial(raw)
    assert problem in str(error.value)


def test_a_window_combines_its_partials_exactly_and_rounds_once():
    window = (1767607200, "prod-1")
    parts = [Partial(*window, 0, 1, Decimal("0.005")), Partial(*window, 1, 2, Decimal("0.005")),
             Partial(*window, -1, 0, Decimal("0"))]
    # each alone rounds half up to 0.01 (0.02 together); their exact sum 0.010 is 0.01
    assert combined(window, parts) == Metric(
        1767607200, 1767607260, "prod-1", "Laptop", 3, Decimal("0.01"), Decimal("0.00"),
    )
    # the rows of a migrated store (LEGACY, in cents) and new partials add up the same way
    parts = [Partial(*window, -1, 4, Decimal("10.01")), Partial(*window, 0, 1, Decimal("0.004")),
             Partial(*window, 2, 1, Decimal("0.004"))]
    assert combined(window, parts) == Metric(
        1767607200, 1767607260, "prod-1", "Laptop", 6, Decimal("10.02"), Decimal("1.67"),
    )
