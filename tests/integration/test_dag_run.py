"""A whole kafka_pipeline run as `airflow dags test` makes it, checked record by record against what
an independent client (kafka-python, stdlib json, Decimal) reads back from the topics."""

import json
import os
import stat
from collections import Counter

from tests.harness.expected import expected_metrics


def test_a_whole_run_then_a_run_with_no_new_orders(pipeline):
    assert pipeline.dag_test("2026-01-05T10:00:00+00:00", orders=3000, seed=11, invalid_ratio=0.1).ok

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
    valid_ids = sorted(
        json.loads(r.value)["order_id"] for p, r in by_position.items() if p not in dead_positions
    )
    processed_docs = [r.json() for r in processed]
    assert sorted(d["order_id"] for d in processed_docs) == valid_ids
    assert 200 < len(dead) < 400  # invalid_ratio 0.1 of 3000

    metrics = pipeline.metrics_lines()
    assert metrics == expected_metrics(processed_docs)
    assert sum(m["order_count"] for m in metrics) == len(processed)

    manifest = pipeline.manifest()
    assert manifest["reconciled"] is True
    assert manifest["summary"] == {
        "generated": 3000, "processed": 3000, "valid": len(processed), "invalid": len(dead),
        "invalid_reasons": dict(sorted(Counter(r.headers["reason"].decode() for r in dead).items())),
        "counted": len(processed), "late": 0, "duplicate": 0,
        "partials_written": manifest["summary"]["partials_written"],
        "metrics_rows": len(metrics), "rows_changed": len(metrics),
        "store": f"sqlite:///{pipeline.output}/metrics.db",
        "export": {"path": str(pipeline.output / "metrics.json"), "days": 7, "lines": len(metrics)},
    }
    assert manifest["summary"]["partials_written"] >= len(metrics)
    # Files the pipeline writes get the modes the umask gives (not 0600: others may read them).
    umask = os.umask(0o022)
    os.umask(umask)
    modes = {
        name: stat.S_IMODE((pipeline.output / name).stat().st_mode) for name in ("metrics.json", "metrics.db")
    }
    assert modes == {"metrics.json": 0o666 & ~umask, "metrics.db": 0o666 & ~umask}
    assert manifest["stages"]["process"]["input"]["partitions"] == {
        str(p): [0, sum(1 for r in orders if r.partition == p)] for p in range(6)
    }

    # The next run has no new orders: it ends cleanly and changes nothing.
    before = (pipeline.output / "metrics.json").read_bytes()
    pipeline.dag_test("2026-01-05T11:00:00+00:00", orders=0)
    assert (pipeline.output / "metrics.json").read_bytes() == before
    assert pipeline.metrics_lines() == metrics
    assert len(pipeline.read("processed-orders")) == len(processed)

