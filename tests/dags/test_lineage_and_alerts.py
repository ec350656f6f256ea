"""The DAGs' assets (what each stage task reads and writes, for Airflow's asset graph and a user's
DAG scheduled on the store) and their alerts (a final failure of any task, a run past its
deadline), as the DAG files declare them."""

import json
from datetime import timedelta
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.definitions.callback import AsyncCallback

from kafka_stages.notifier import PipelineNotifier
from tests.harness.dag_tasks import arg

DAGS = Path(__file__).resolve().parents[2] / "dags"
ROOT = DAGS.parent

DAG_ID = "kafka_pipeline"


def kafka(topic: str) -> str:
    return f"kafka://127.0.0.1:9092/{topic}"


STORE = f"file://{ROOT}/output/metrics.db"  # no metrics_db connection in this environment
# task -> (inlets, outlets), as URIs; generate's `orders` is not an outlet (kafka_stages.lineage).
ASSETS = {
    "generate": ([], []),
    "process": ([kafka("orders")], [kafka("processed-orders"), kafka("orders-dlq")]),
    "analyze": (
        [kafka("processed-orders"), kafka("analyze-state")],
        [kafka("product-metrics"), kafka("analyze-state"), kafka("orders-dlq")],
    ),
    "sink": ([kafka("product-metrics")], [STORE]),
    "replay": ([kafka("processed-orders"), kafka("orders-dlq")], [kafka("product-metrics")]),
}


def uris(task, which: str) -> list[str]:
    return [asset.uri for asset in arg(task, which)]


def test_each_stage_task_declares_its_topics_and_the_store_as_assets_named_by_their_uri(dagbag):
    seen = set()
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            if task.task_id in ASSETS:
                assert (uris(task, "inlets"), uris(task, "outlets")) == ASSETS[task.task_id], task
                assert {a.name for a in arg(task, "inlets") + arg(task, "outlets")} == set(
                    uris(task, "inlets") + uris(task, "outlets")
                )
                seen.add((dag.dag_id, task.task_id))
            else:
                assert (arg(task, "inlets"), arg(task, "outlets")) in (([], []), (None, None)), task
    assert len(seen) == 4 + 3 + 4 + 2  # kafka_pipeline, on_orders, stream, replay


@pytest.mark.parametrize(("conn", "uri"), [
    (None, "file:///srv/out/metrics.db"),
    ({"conn_type": "sqlite", "host": "/data/metrics.db"}, "file:///data/metrics.db"),
    (
        {"conn_type": "postgres", "host": "db.example", "port": 6432, "login": "pipeline",
         "password": "s3cret", "schema": "metrics", "extra": {"sslmode": "require"}},
        "postgres://db.example:6432/metrics/public/product_metrics",
    ),
    ("postgres://pipeline:s3cret@db.example/metrics", "postgres://db.example:5432/metrics/public/product_metrics"),
])
def test_the_store_asset_comes_from_the_environment_at_parse_time(monkeypatch, conn, uri):
    monkeypatch.setenv("PIPELINE_OUTPUT_DIR", "/srv/out")
    if conn is None:
        monkeypatch.delenv("AIRFLOW_CONN_METRICS_DB", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW_CONN_METRICS_DB", conn if isinstance(conn, str) else json.dumps(conn))
    dag = DagBag(dag_folder=str(DAGS / "kafka_pipeline.py")).dags["kafka_pipeline"]
    assert uris(dag.get_task("sink"), "outlets") == [uri]


def test_every_task_of_every_dag_sends_its_final_failure_to_the_pipeline_alerts_webhook(dagbag):
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            callbacks = arg(task, "on_failure_callback")
            assert [(type(c), c.conn_id) for c in callbacks] == [(PipelineNotifier, "pipeline_alerts")], task


def test_no_deadline_alert_while_dag_test_cannot_run_one(dagbag):
    """Airflow 3.3.2's dag.test() fails a run with a DeadlineAlert once it succeeds: it looks the
    alerts up by ids that its own serialization of the DAG made anew. `make run` and the tests
    run the DAGs that way."""
    from airflow.sdk import DAG
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

    assert [dag.deadline for dag in dagbag.dags.values()] == [None] * 4

    with DAG("probe", schedule=None, deadline=DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=timedelta(minutes=65),
        callback=AsyncCallback(PipelineNotifier, kwargs={"conn_id": "pipeline_alerts"}),
    )) as probe:
        pass
    # The notifier is a valid deadline callback (awaitable, importable by the triggerer).
    assert probe.deadline[0].callback.serialize() == {
        "path": "kafka_stages.notifier.PipelineNotifier", "kwargs": {"conn_id": "pipeline_alerts"},
    }


def watchers(asset) -> list[tuple[str, dict]]:
    return [(w.name, w.trigger.serialize()) for w in asset.watchers]


def test_every_declaration_of_the_orders_topic_carries_the_watcher(dagbag):
    """Airflow takes an asset's watchers from the DAG file it parsed last: one declaration of
    `orders` without the watcher, in any DAG, would drop kafka_pipeline_on_orders' runs."""
    (scheduled,) = dagbag.dags["kafka_pipeline_on_orders"].timetable.asset_condition.objects
    assert scheduled.uri == kafka("orders") and [name for name, _ in watchers(scheduled)] == ["orders_lag"]
    declared = [
        asset for dag in dagbag.dags.values() for task in dag.tasks
        for asset in (arg(task, "inlets") or []) + (arg(task, "outlets") or [])
        if asset.uri == kafka("orders")
    ]
    assert len(declared) == 3  # process's inlet in kafka_pipeline, on_orders and stream
    assert all(watchers(asset) == watchers(scheduled) for asset in declared)
