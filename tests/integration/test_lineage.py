"""Lineage of a whole kafka_pipeline run (`airflow dags test` in a process of its own, so that the
OpenLineage provider reads its transport when Airflow loads its plugins, as a deployment's
processes do): each stage task's START and COMPLETE events in the file transport, with the
datasets OpenLineage's naming gives and the records each stage read and wrote, counted here by an
independent client; and the asset events the stages' outlets left in the metadata DB."""

import json
import sqlite3
from collections import Counter
from contextlib import closing
from pathlib import Path

DATE = "2026-01-05T10:00:00+00:00"
STAGES = ("generate", "process", "analyze", "sink")


def datasets(event: dict, kind: str) -> list[tuple[str, str, int | None]]:
    """(namespace, name, rowCount) of an event's inputs or outputs."""
    facet = "inputStatistics" if kind == "inputs" else "outputStatistics"
    key = "inputFacets" if kind == "inputs" else "outputFacets"
    return [
        (d["namespace"], d["name"], d.get(key, {}).get(facet, {}).get("rowCount")) for d in event[kind]
    ]


def test_each_stage_task_emits_its_datasets_and_counts_and_its_outlets_asset_events(pipeline, tmp_path):
    events = tmp_path / "openlineage.jsonl"
    pipeline.env["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps(
        {"type": "file", "log_file_path": str(events), "append": True}
    )
    pipeline.airflow("dags", "test", "kafka_pipeline", DATE, "--conf", json.dumps({"orders": 400, "seed": 5}))

    orders, processed = pipeline.read("orders"), pipeline.read("processed-orders")
    metrics = pipeline.read("product-metrics")
    # A dead letter's source topic says which stage rejected it: process reads orders.
    by = {b"orders": "process", b"processed-orders": "analyze"}
    dead = Counter(by[r.headers["source.topic"]] for r in pipeline.read("orders-dlq"))
    rows = len(pipeline.store_rows())
    assert (len(orders), sum(dead.values()) + len(processed)) == (400, 400)

    by_task: dict[str, dict[str, dict]] = {}
    for line in events.read_text().splitlines():
        event = json.loads(line)
        job = event["job"]["name"]
        if job.startswith("kafka_pipeline."):
            by_task.setdefault(job.removeprefix("kafka_pipeline."), {})[event["eventType"]] = event
    for task in STAGES:
        assert {"START", "COMPLETE"} <= set(by_task[task]), task

    kafka = f"kafka://{pipeline.bootstrap.split(',')[0]}"
    complete = {task: (datasets(by_task[task]["COMPLETE"], "inputs"),
                       datasets(by_task[task]["COMPLETE"], "outputs")) for task in STAGES}
    store = str(pipeline.output / "metrics.db")
    assert complete == {
        "generate": ([], [(kafka, "orders", 400)]),
        "process": ([(kafka, "orders", 400)],
                    [(kafka, "processed-orders", len(processed)), (kafka, "orders-dlq", dead["process"])]),
        "analyze": (
            [(kafka, "processed-orders", len(processed)), (kafka, "analyze-state", None)],
            # Its state changelog's records are not counted in its result: no statistics.
            [(kafka, "product-metrics", len(metrics)), (kafka, "analyze-state", None),
             (kafka, "orders-dlq", dead["analyze"])],
        ),
        "sink": ([(kafka, "product-metrics", len(metrics))], [("file", store, rows)]),
    }

    # Airflow's asset events: one per outlet of each stage task that succeeded.
    with closing(sqlite3.connect(Path(pipeline.env["AIRFLOW_HOME"]) / "airflow.db")) as db:
        emitted = db.execute(
            "SELECT e.source_task_id, a.uri FROM asset_event e JOIN asset a ON a.id = e.asset_id "
            "ORDER BY e.id"
        ).fetchall()
    topic = f"kafka://{pipeline.bootstrap.split(',')[0]}/"
    assert sorted(emitted) == sorted([
        ("process", topic + "processed-orders"), ("process", topic + "orders-dlq"),
        ("analyze", topic + "product-metrics"), ("analyze", topic + "analyze-state"),
        ("analyze", topic + "orders-dlq"), ("sink", f"file://{store}"),
    ])
