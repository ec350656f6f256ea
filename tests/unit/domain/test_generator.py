from collections import Counter
from datetime import datetime, timezone

import pytest

from include.pipeline.domain import generator, orders

START = datetime(2026, 1, 5, 9, tzinfo=timezone.utc)
END = datetime(2026, 1, 5, 10, tzinfo=timezone.utc)


def test_valid_orders_follow_the_contract_and_spread_over_the_interval():
    records = list(generator.orders(5000, START, END, invalid_ratio=0, seed=3))
    parsed = [orders.parse(value) for _, value in records]
    assert all(isinstance(o, orders.Order) for o in parsed)
    assert len({o.order_id for o in parsed}) == 5000
    assert [key for key, _ in records] == [o.order_id.encode() for o in parsed]
    assert all(START <= o.event_time < END for o in parsed)
    assert all(o.timestamp.endswith("+00:00") for o in parsed)
    assert set(Counter(o.product_id for o in parsed)) == {"prod-1", "prod-2", "prod-3", "prod-4", "prod-5"}
    assert len({o.user_id for o in parsed}) > 500
    assert all(o.amount == o.amount.quantize(orders.Decimal("0.01")) for o in parsed)


def test_invalid_share_and_variety():
    records = list(generator.orders(4000, START, END, invalid_ratio=0.25, seed=3))
    reasons = Counter(r.reason for _, v in records if isinstance(r := orders.parse(v), orders.Rejected))
    assert 800 < sum(reasons.values()) < 1200
    assert set(reasons) == {
        "empty", "invalid_json", "not_an_object", "bad_utf8", "invalid_amount", "unknown_product",
        "missing_field", "invalid_user_id", "invalid_timestamp", "tombstone",
    }


def test_every_deliberately_invalid_record_is_invalid():
    records = list(generator.orders(3000, START, END, invalid_ratio=1, seed=9))
    assert all(isinstance(orders.parse(value), orders.Rejected) for _, value in records)
    assert all(key.startswith(b"user-") for key, _ in records)


def test_same_seed_same_orders_other_seed_other_ids():
    first = list(generator.orders(100, START, END, 0.1, seed=42))
    assert first == list(generator.orders(100, START, END, 0.1, seed=42))
    other = {v for _, v in generator.orders(100, START, END, 0, seed=43)}
    assert not other & {v for _, v in first}


def test_chunk_size_does_not_change_the_orders():
    whole = list(generator.orders(25_000, START, END, 0.1, seed=5))
    assert [r for chunk in generator.chunks(25_000, START, END, 0.1, seed=5, size=7) for r in chunk] == whole


def test_bad_ratio_is_refused():
    with pytest.raises(ValueError, match="invalid_ratio must be between 0 and 1"):
        list(generator.orders(1, START, END, invalid_ratio=1.5))


def test_airflow_pendulum_datetimes_give_the_same_orders():
    import pendulum

    start, end = pendulum.instance(START), pendulum.instance(END)
    assert list(generator.orders(50, start, end, 0.1, seed=1)) == list(
        generator.orders(50, START, END, 0.1, seed=1)
    )
