"""Each stage alone via `airflow tasks test`, on hand-written input: exact records, exact money,
one window fed by two runs, every invalid record in the dead-letter topic as it came."""

import json
from datetime import datetime
from decimal import Decimal

W = 1767607200  # 2026-01-05T10:00:00Z


def order(order_id, product_id, amount, timestamp, **extra):
    doc = {"order_id": order_id, "user_id": "user-1", "product_id": product_id, "timestamp": timestamp, **extra}
    return order_id.encode(), json.dumps(doc)[:-1].encode() + f', "amount": {amount}}}'.encode()


FIRST_VALID = [
    order("a1", "prod-1", "10.005", "2026-01-05T10:00:05Z"),
    order("a2", "prod-1", "20.00", "2026-01-05T10:00:59.999+00:00"),
    order("a3", "prod-1", "0.10", "2026-01-05T11:00:30+01:00"),
    order("a4", "prod-2", "5", "2026-01-05T10:01:00"),
    order("a5", "prod-2", "99.99", "2026-01-05T10:01:30Z", coupon="SPRING"),
]
FIRST_INVALID = {  # key -> (value, reason)
    b"k-tombstone": (None, "tombstone"),
    b"k-empty": (b"", "empty"),
    b"k-utf8": (b'{"order_id": "\xff\xfe"}', "bad_utf8"),
    b"k-text": (b"not json at all", "invalid_json"),
    b"k-nan": (b'{"order_id": "x", "amount": NaN}', "invalid_json"),
    b"k-array": (b"[1, 2]", "not_an_object"),
    b"k-string-amount": (order("x", "prod-1", '"12.50"', "2026-01-05T10:00:00Z")[1], "invalid_amount"),
    b"k-zero": (order("x", "prod-1", "0", "2026-01-05T10:00:00Z")[1], "invalid_amount"),
    b"k-huge": (order("x", "prod-1", "1e400", "2026-01-05T10:00:00Z")[1], "invalid_amount"),
    b"k-product": (order("x", "prod-9", "1.00", "2026-01-05T10:00:00Z")[1], "unknown_product"),
    b"k-date-only": (order("x", "prod-1", "1.00", "2026-01-05")[1], "invalid_timestamp"),
    b"k-empty-id": (order("", "prod-1", "1.00", "2026-01-05T10:00:00Z")[1], "invalid_order_id"),
    b"k-no-user": (b'{"order_id": "x", "product_id": "prod-1", "amount": 1, "timestamp": "2026-01-05T10:00:00Z"}',
                   "missing_field"),
}
SECOND_VALID = [
    order("b1", "prod-1", "0.005", "2026-01-05T10:00:10Z"),
    order("b2", "prod-3", "1.00", "2026-01-05T10:00:00Z"),
]
SECOND_INVALID = {b"k-brace": (b"{", "invalid_json")}


def metric(start, product_id, name, count, total, avg):
    return {"window_start": start, "window_end": start + 60, "product_id": product_id, "product_name": name,
            "order_count": count, "total_revenue": Decimal(total), "avg_order_value": Decimal(avg)}


def run_stages(pipeline):
    for task in ("process", "analyze", "sink"):
        pipeline.task(task)


def check_dead_letters(pipeline, invalid):
    sources = {(r.partition, r.offset): r for r in pipeline.read("orders")}
    dead = pipeline.read("orders-dlq")
    assert sorted(r.key for r in dead) == sorted(invalid)
    for record in dead:
        value, reason = invalid[record.key]
        assert record.value == value
        assert record.headers["reason"] == reason.encode()
        assert record.headers["detail"]
        assert record.headers["source.topic"] == b"orders"
        source = sources[(int(record.headers["source.partition"]), int(record.headers["source.offset"]))]
        assert (source.key, source.value) == (record.key, record.value)


def test_stages_alone_two_runs_into_one_window(pipeline):
    pipeline.task("create_topics")
    pipeline.produce("orders", FIRST_VALID + [(k, v) for k, (v, _) in FIRST_INVALID.items()])
    run_stages(pipeline)

    processed = pipeline.read("processed-orders")
    assert sorted(r.key for r in processed) == [b"a1", b"a2", b"a3", b"a4", b"a5"]
    a5 = next(r.json() for r in processed if r.key == b"a5")
    assert datetime.fromisoformat(a5.pop("processed_at")).utcoffset().total_seconds() == 0
    assert a5 == {"order_id": "a5", "user_id": "user-1", "product_id": "prod-2", "product_name": "Phone",
                  "amount": Decimal("99.99"), "timestamp": "2026-01-05T10:01:30Z"}
    check_dead_letters(pipeline, FIRST_INVALID)
    assert pipeline.metrics_lines() == [
        metric(W, "prod-1", "Laptop", 3, "30.11", "10.04"),  # 30.105 and 10.035 round half-up
        metric(W + 60, "prod-2", "Phone", 2, "104.99", "52.50"),
    ]

    pipeline.produce("orders", SECOND_VALID + [(k, v) for k, (v, _) in SECOND_INVALID.items()])
    run_stages(pipeline)
    expected = [
        metric(W, "prod-1", "Laptop", 4, "30.11", "7.53"),  # 30.110 / 4 = 7.5275
        metric(W, "prod-3", "Tablet", 1, "1.00", "1.00"),
        metric(W + 60, "prod-2", "Phone", 2, "104.99", "52.50"),
    ]
    assert pipeline.metrics_lines() == expected
    check_dead_letters(pipeline, {**FIRST_INVALID, **SECOND_INVALID})
    by_key = {r.key: r.json() for r in pipeline.read("product-metrics")}  # newest record per key
    assert [by_key[f"{m['window_start']}:{m['product_id']}".encode()] for m in expected] == expected


def test_generate_alone_makes_the_orders_of_the_hour_before(pipeline):
    pipeline.task("create_topics")
    pipeline.task("generate", params={"orders": 500, "seed": 5, "invalid_ratio": 0})
    records = pipeline.read("orders")
    docs = [r.json() for r in records]
    assert len(docs) == 500
    assert len({d["order_id"] for d in docs}) == 500
    assert [r.key.decode() for r in records] == [d["order_id"] for d in docs]
    times = [datetime.fromisoformat(d["timestamp"]) for d in docs]
    assert min(times) >= datetime.fromisoformat("2026-01-05T09:00:00+00:00")
    assert max(times) < datetime.fromisoformat("2026-01-05T10:00:00+00:00")


def test_a_stage_before_its_topics_exist_says_what_to_do(pipeline):
    result = pipeline.task("process", ok=False)
    assert result.returncode != 0
    assert "topic 'orders' does not exist: run the create_topics task first" in result.stdout + result.stderr
