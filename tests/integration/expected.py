"""What a clean run makes of the given input: the pipeline's pure functions, in order, with no
Kafka, no retries and no faults. Fault tests compare the real outcome with this."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal

from include.pipeline import codec, orders, settings
from include.pipeline.analyzer import COUNTED, VERDICTS, Analyzer
from include.pipeline.order_columns import OrderColumns
from include.pipeline.windows import metric


def clean_run(values: list[bytes | None], grace: int = settings.GRACE_SECONDS,
              horizon: int = settings.DEDUP_HORIZON_SECONDS) -> tuple[list[dict], Counter]:
    """(metrics.json lines, dead-letter reasons) for order values processed in this order."""
    analyzer = Analyzer.create(grace, horizon)
    parsed = [orders.parse(value) for value in values]
    reasons: Counter[str] = Counter(result.reason for result in parsed if isinstance(result, orders.Rejected))
    # One batch of all the valid orders: as offering them in turn (tests/unit/test_batch_path.py).
    verdicts = analyzer.offer_batch(OrderColumns.of([r for r in parsed if isinstance(r, orders.Order)]))
    reasons.update(VERDICTS[verdict] for verdict in verdicts.tolist() if verdict != COUNTED)
    lines = [metric(key, aggregate) for key, aggregate in sorted(analyzer.windows.aggregates.items())]
    return [codec.decode(codec.encode(line)) for line in lines], reasons


CENT = Decimal("0.01")
PRODUCT_NAMES = {
    "prod-1": "Laptop", "prod-2": "Phone", "prod-3": "Tablet", "prod-4": "Monitor", "prod-5": "Keyboard",
}


def expected_metrics(processed: list[dict]) -> list[dict]:
    """The metrics contract, computed independently from the processed orders."""
    windows = defaultdict(list)
    for doc in processed:
        at = datetime.fromisoformat(doc["timestamp"]).astimezone(timezone.utc)
        start = int(at.timestamp()) // 60 * 60
        windows[(start, doc["product_id"])].append(Decimal(doc["amount"]))  # a JSON int too
    return [
        {
            "window_start": start, "window_end": start + 60, "product_id": product_id,
            "product_name": PRODUCT_NAMES[product_id], "order_count": len(amounts),
            "total_revenue": sum(amounts).quantize(CENT, ROUND_HALF_UP),
            "avg_order_value": (sum(amounts) / len(amounts)).quantize(CENT, ROUND_HALF_UP),
        }
        for (start, product_id), amounts in sorted(windows.items())
    ]


def metrics_of_partials(records: list) -> list[dict]:
    """The metrics product-metrics holds: the newest record per key (a partial of one partition),
    the partials of each window added up and rounded half-up once."""
    newest = {r.key: r.json() for r in records}
    windows = defaultdict(lambda: [0, Decimal(0)])
    for doc in newest.values():
        window = windows[(doc["window_start"], doc["product_id"])]
        window[0] += doc["order_count"]
        window[1] += Decimal(doc["total"])
    return [
        {
            "window_start": start, "window_end": start + 60, "product_id": product_id,
            "product_name": PRODUCT_NAMES[product_id], "order_count": count,
            "total_revenue": total.quantize(CENT, ROUND_HALF_UP),
            "avg_order_value": (total / count).quantize(CENT, ROUND_HALF_UP),
        }
        for (start, product_id), (count, total) in sorted(windows.items()) if count
    ]


def counted(processed: list, dead: list) -> list[dict]:
    """The processed orders analyze counted: those it did not dead-letter (late, duplicate),
    by position, as independent JSON documents."""
    rejected = {
        (int(r.headers["source.partition"]), int(r.headers["source.offset"]))
        for r in dead if r.headers["source.topic"] == settings.PROCESSED.encode()
    }
    return [r.json() for r in processed if (r.partition, r.offset) not in rejected]


def metrics_of_counted(pipeline) -> list[dict]:
    """The independent oracle over what a pipeline counted: the metrics of the processed orders
    analyze did not dead-letter, as its topics hold them."""
    return expected_metrics(counted(pipeline.read(settings.PROCESSED), pipeline.read(settings.DLQ)))


def order_value(order_id: str, product_id: str, amount: str, timestamp: str) -> bytes:
    """An order's JSON with the amount written exactly as given."""
    head = codec.encode(
        {"order_id": order_id, "user_id": "user-1", "product_id": product_id, "timestamp": timestamp}
    )
    return head[:-1] + f',"amount":{amount}}}'.encode()


# Bad input of every kind, hardened cases included: (key, value, reason).
ZOO = [
    (b"z-tombstone", None, "tombstone"),
    (b"z-empty", b"", "empty"),
    (b"z-utf8", b'{"order_id": "\xff\xfe"}', "bad_utf8"),
    (b"z-binary", bytes(range(256)) * 4, "invalid_json"),
    (b"z-text", b"not json at all", "invalid_json"),
    (b"z-nested", b"[" * 50_000 + b"]" * 50_000, "too_large"),
    (b"z-nested-small", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "invalid_json"),
    (b"z-oversized", b'{"order_id": "' + b"x" * 900_000 + b'"}', "too_large"),
    (b"z-array", b"[1, 2]", "not_an_object"),
    (b"z-huge-int", order_value("z1", "prod-1", "9" * 5000, "2026-01-05T10:00:00Z"), "invalid_json"),
    (b"z-huge-exp", order_value("z2", "prod-1", "1e999999999", "2026-01-05T10:00:00Z"), "invalid_amount"),
    (b"z-tiny-exp", order_value("z3", "prod-1", "1e-999999999", "2026-01-05T10:00:00Z"), "invalid_amount"),
    (b"z-string-amount", order_value("z4", "prod-1", '"12.50"', "2026-01-05T10:00:00Z"), "invalid_amount"),
    (b"z-nan", b'{"order_id": "z5", "amount": NaN}', "invalid_json"),
    (b"z-product", order_value("z6", "prod-9", "1.00", "2026-01-05T10:00:00Z"), "unknown_product"),
    (b"z-date", order_value("z7", "prod-1", "1.00", "2026-01-05"), "invalid_timestamp"),
    (b"z-missing",
     b'{"order_id": "z8", "product_id": "prod-1", "amount": 1, "timestamp": "2026-01-05T10:00:00Z"}',
     "missing_field"),
]
