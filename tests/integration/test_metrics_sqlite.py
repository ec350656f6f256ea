"""The default metrics store (SQLite, output/metrics.db) as users meet it: a project from before the
store upgraded without loss, and the store of one Kafka cluster refusing another's."""

import json
import re

from kafka import KafkaAdminClient

from scripts.kafka.local import throwaway_broker
from tests.harness.expected import expected_metrics
from tests.harness.pipeline import Pipeline


def run(pipeline, date: str, **conf) -> dict:
    """A whole run; returns its manifest."""
    pipeline.dag_test(date, **conf)
    return pipeline.manifest()


def test_a_project_with_only_metrics_json_imports_it_once_and_continues_from_the_group(pipeline):
    first = run(pipeline, "2026-01-05T10:00:00+00:00", orders=400, seed=1)
    lines = pipeline.metrics_lines()
    # What the project looked like before the store: metrics.json, the group's offsets, no database.
    for name in ("metrics.db", "metrics.db-wal", "metrics.db-shm"):
        (pipeline.output / name).unlink(missing_ok=True)
    assert (pipeline.output / "metrics.json").exists()
    admin = KafkaAdminClient(bootstrap_servers=pipeline.bootstrap)
    group = admin.list_group_offsets("kafka-pipeline-sink")["kafka-pipeline-sink"]
    admin.close()
    committed = {
        str(tp.partition): meta.offset for tp, meta in group.items() if tp.topic == "product-metrics"
    }
    assert first["stages"]["sink"]["read"] > 0 and all(committed.values())

    second = run(pipeline, "2026-01-05T11:00:00+00:00", orders=400, seed=2)
    sink = second["stages"]["sink"]
    assert second["reconciled"] is True
    assert sink["imported"] == len(lines)
    # It read on from where the group was, not from the start of product-metrics.
    assert {p: r[0] for p, r in sink["input"]["partitions"].items()} == committed
    processed = [r.json() for r in pipeline.read("processed-orders")]
    assert pipeline.metrics_lines() == expected_metrics(processed)

    # Once: a store that has rows never imports again (the file is only its export now).
    with (pipeline.output / "metrics.json").open("a") as file:
        file.write(json.dumps({**lines[0], "window_start": 60, "window_end": 120}, default=str) + "\n")
    result = pipeline.task("sink", "2026-01-05T12:00:00+00:00")
    assert "imported" not in result.output
    assert pipeline.metrics_lines() == expected_metrics(processed)


def test_a_store_refuses_another_kafka_cluster_before_writing_anything(pipeline, tmp_path):
    run(pipeline, "2026-01-05T10:00:00+00:00", orders=300, seed=3)
    rows = pipeline.metrics_lines()
    exported = (pipeline.output / "metrics.json").read_bytes()

    with throwaway_broker(tmp_path / "kafka-b", pipeline.env) as env:
        other = Pipeline(env, pipeline.output)  # the same output directory, another cluster
        other.task("create_topics")
        other.produce("product-metrics", [(b"1767607200:prod-1", json.dumps({
            "window_start": 1767607200, "window_end": 1767607260, "product_id": "prod-1",
            "product_name": "Laptop", "order_count": 1, "total_revenue": 5.0, "avg_order_value": 5.0,
        }).encode())])
        result = other.task("sink", ok=False)
    output = result.output
    assert not result.ok
    found = re.search(
        rf"the metrics store sqlite:///{re.escape(str(pipeline.output))}/metrics.db "
        r"\(no 'metrics_db' connection: the default\) holds the metrics of Kafka cluster (\S+), "
        r"and this run reads cluster (\S+): nothing was written\. Give each cluster its own store: "
        r"another metrics_db connection, or another PIPELINE_OUTPUT_DIR for the default SQLite store", output,
    )
    assert found and found.group(1) != found.group(2), output[-3000:]
    assert pipeline.metrics_lines() == rows
    assert (pipeline.output / "metrics.json").read_bytes() == exported
