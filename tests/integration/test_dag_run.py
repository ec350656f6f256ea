"""A whole kafka_pipeline run with `airflow dags test`, checked record by record against what
an independent client (kafka-python, stdlib json, Decimal) reads back from the topics."""

import json
from collections import defaultdict
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
PRODUCT_NAMES = {"prod-1": "Laptop", "prod-2": "Phone", "prod-3": "Tablet", "prod-4": "Monitor", "prod-5": "Keyboard"}


def expected_metrics(processed):
    """The metrics contract, computed independently from the processed orders."""
    windows = defaultdict(list)
    for doc in processed:
        at = datetime.fromisoformat(doc["timestamp"]).astimezone(timezone.utc)
        start = int(at.timestamp()) // 60 * 60
        windows[(start, doc["product_id"])].append(doc["amount"])
    return [
        {
            "window_start": start, "window_end": start + 60, "product_id": product_id,
            "product_name": PRODUCT_NAMES[product_id], "order_count": len(amounts),
            "total_revenue": sum(amounts).quantize(CENT, ROUND_HALF_UP),
            "avg_order_value": (sum(amounts) / len(amounts)).quantize(CENT, ROUND_HALF_UP),
        }
        for (start, product_id), amounts in sorted(windows.items())
    ]


def test_a_whole_run_then_a_run_with_no_new_orders(pipeline):
    result = pipeline.airflow(
        "dags", "test", "kafka_pipeline", "2026-01-05T10:00:00+00:00",
        "--conf", json.dumps({"orders": 3000, "seed": 11, "invalid_ratio": 0.1}),
    )
    assert "state=success" in result.stdout + result.stderr

    orders = pipeline.read("orders")
    processed = pipeline.read("processed-orders")
    dead = pipeline.read("orders-dlq")
    assert len(orders) == 3000
    # Every order went exactly one way: processed (by id) or dead-lettered (by position).
    assert len(processed) + len(dead) == 3000
    dead_positions = set()
    by_position = {(r.partition, r.offset): r for r in orders}
    for record in dead:
        position = (int(record.headers["source.partition"]), int(record.headers["source.offset"]))
        assert (by_position[position].key, by_position[position].value) == (record.key, record.value)
        dead_positions.add(position)
    assert len(dead_positions) == len(dead)
    valid_ids = sorted(json.loads(r.value)["order_id"] for p, r in by_position.items() if p not in dead_positions)
    processed_docs = [r.json() for r in processed]
    assert sorted(d["order_id"] for d in processed_docs) == valid_ids
    assert 200 < len(dead) < 400  # invalid_ratio 0.1 of 3000

    metrics = pipeline.metrics_lines()
    assert metrics == expected_metrics(processed_docs)
    assert sum(m["order_count"] for m in metrics) == len(processed)

    manifest = json.loads(next((pipeline.output / "runs").glob("*.json")).read_text())
    assert manifest["summary"] | {"metrics_path": None} == {
        "generated": 3000, "processed": 3000, "valid": len(processed), "invalid": len(dead),
        "counted": len(processed), "windows_updated": len(metrics), "metrics_lines": len(metrics),
        "metrics_path": None,
    }

    # The next run has no new orders: it ends cleanly and changes nothing.
    before = (pipeline.output / "metrics.json").read_bytes()
    pipeline.airflow("dags", "test", "kafka_pipeline", "2026-01-05T11:00:00+00:00", "--conf", '{"orders": 0}')
    assert (pipeline.output / "metrics.json").read_bytes() == before
    assert len(pipeline.read("processed-orders")) == len(processed)
