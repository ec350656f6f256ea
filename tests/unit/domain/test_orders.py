from datetime import datetime, timezone
from decimal import Decimal

import pytest

from include.pipeline.domain import codec, orders
from tests.harness.factories import order_value


def test_valid_order_is_parsed_exactly():
    order = orders.parse(order_value(user_id="u-1", product_id="prod-3", amount=Decimal("1234.567")))
    assert order == orders.Order(
        "o-1", "u-1", "prod-3", Decimal("1234.567"), "2026-01-05T10:00:30Z", 1767607230_000000,
    )
    assert order.event_time == datetime(2026, 1, 5, 10, 0, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("timestamp", "utc"),
    [
        ("2026-01-05T10:00:30Z", datetime(2026, 1, 5, 10, 0, 30)),
        ("2026-01-05T10:00:30+02:00", datetime(2026, 1, 5, 8, 0, 30)),
        ("2026-01-05T00:30:00-05:30", datetime(2026, 1, 5, 6, 0, 0)),
        ("2026-01-05T10:00:30", datetime(2026, 1, 5, 10, 0, 30)),  # no offset: UTC
        ("2026-01-05T10:00:30.123456+00:00", datetime(2026, 1, 5, 10, 0, 30, 123456)),
        ("2026-01-05 10:00:30Z", datetime(2026, 1, 5, 10, 0, 30)),
    ],
)
def test_timestamps_are_read_as_utc(timestamp, utc):
    assert orders.parse(order_value(timestamp=timestamp)).event_time == utc.replace(tzinfo=timezone.utc)


def test_integer_amounts_and_extra_fields_are_accepted():
    order = orders.parse(order_value(product_id="prod-3", amount=5, coupon="X", nested={"a": [1]}))
    assert (order.amount, order.product_id) == (Decimal(5), "prod-3")
    assert orders.parse(order_value(amount=10**30)).amount == Decimal(10**30)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "tombstone"),
        (b"", "empty"),
        (b"{not json", "invalid_json"),
        (b'{"a": NaN}', "invalid_json"),
        (b'{"a": 1}{"b": 2}', "invalid_json"),
        (b"[" * 60_000, "invalid_json"),  # deeply nested
        (b'{"note": "' + b"x" * 70_000 + b'"}', "too_large"),
        (bytes(range(256)), "invalid_json"),  # binary
        (b'{"order_id": "\xff"}', "bad_utf8"),
        (b'"a string"', "not_an_object"),
        (b"[1, 2]", "not_an_object"),
        (b"42", "not_an_object"),
        (b"null", "not_an_object"),
        (order_value(order_id=...), "missing_field"),
        (order_value(timestamp=...), "missing_field"),
        (order_value(order_id=""), "invalid_order_id"),
        (order_value(order_id=7), "invalid_order_id"),
        (order_value(user_id=None), "invalid_user_id"),
        (order_value(product_id="prod-6"), "unknown_product"),
        (order_value(product_id="PROD-1"), "unknown_product"),
        (order_value(amount='"19.99"'), "invalid_amount"),
        (order_value(amount=True), "invalid_amount"),
        (order_value(amount=None), "invalid_amount"),
        (order_value(amount=0), "invalid_amount"),
        (order_value(amount=Decimal("-0.01")), "invalid_amount"),
        (order_value(amount=Decimal("-0.0")), "invalid_amount"),
        (order_value(amount=Decimal("1e-400")), "invalid_amount"),  # 0 as a double
        (order_value(amount=Decimal("1e-999999999")), "invalid_amount"),
        (b'{"amount": ' + b"9" * 5000 + b"}", "invalid_json"),  # an integer too long to read
        (b'{"order_id":"o","user_id":"u","product_id":"prod-1","amount":1e400,"timestamp":"2026-01-05T10:00:00Z"}',
         "invalid_amount"),
        (order_value(timestamp="yesterday"), "invalid_timestamp"),
        (order_value(timestamp="2026-01-05"), "invalid_timestamp"),
        (order_value(timestamp="2026-13-05T10:00:00Z"), "invalid_timestamp"),
        (order_value(timestamp=1767607200), "invalid_timestamp"),
        (order_value(timestamp="2026-01-05T10:00:00+25:00"), "invalid_timestamp"),
    ],
)
def test_invalid_input_is_rejected_with_its_reason(value, reason):
    result = orders.parse(value)
    assert isinstance(result, orders.Rejected)
    assert result.reason == reason
    assert result.detail


@pytest.mark.parametrize(
    ("timestamp", "start"),
    [
        ("2026-01-05T10:00:00Z", 1767607200),
        ("2026-01-05T10:00:59.999999Z", 1767607200),
        ("2026-01-05T10:01:00Z", 1767607260),
        ("2026-01-05T11:00:30+01:00", 1767607200),
        ("1969-12-31T23:59:30Z", -60),
    ],
)
def test_window_start_is_the_utc_minute(timestamp, start):
    assert orders.parse(order_value(timestamp=timestamp)).window_start == start


def test_enriched_record_keeps_the_order_and_adds_name_and_time():
    value = order_value(user_id="u-1", product_id="prod-3", amount=Decimal("0.10"), extra="dropped")
    order = orders.parse(value)
    assert codec.decode(orders.enrich(order, "2026-01-05T10:05:00+00:00")) == {
        "order_id": "o-1",
        "user_id": "u-1",
        "product_id": "prod-3",
        "product_name": "Tablet",
        "amount": Decimal("0.10"),
        "timestamp": "2026-01-05T10:00:30Z",
        "processed_at": "2026-01-05T10:05:00+00:00",
    }
