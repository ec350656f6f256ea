"""A failed task of a real DAG run (``dag.test()`` in this process) sends its notification to the
webhook of the pipeline_alerts connection: a real HTTP server this test serves on a free port.
No Kafka is needed: the tasks that would use it fail first, or are marked success."""

import json
import os

import pytest

from tests.harness import in_process
from tests.harness.http_capture import capturing

DATE = "2026-01-05T10:00:00+00:00"


@pytest.fixture
def webhook():
    with capturing() as server:
        yield server


def received(server) -> list[tuple]:
    return [(r.path, r.content_type, r.json()) for r in server.requests]


def environment(tmp_path, webhook) -> dict[str, str]:
    url = f"{webhook.base_url}/services/T0/B0/secret"
    return {**os.environ, "PIPELINE_OUTPUT_DIR": str(tmp_path / "output"),
            "AIRFLOW_CONN_PIPELINE_ALERTS": json.dumps({"conn_type": "http", "host": url})}


def test_a_task_that_fails_for_good_is_posted_to_the_webhook(tmp_path, webhook):
    run = in_process.run_dag(environment(tmp_path, webhook), "kafka_pipeline", DATE, {"bogus": 1})
    assert run.state == "failed"
    assert in_process.task_state("check_params") == ("failed", 1)
    (run_id,) = in_process.run_ids("kafka_pipeline")
    error = (
        "this run's params cannot work:\n  unknown param 'bogus': the valid ones are "
        "dedup_horizon_seconds, grace_seconds, invalid_ratio, metrics_json_days, orders, rate, seed, "
        "wait_for_orders_seconds, workers"
    )
    assert received(webhook) == [("/services/T0/B0/secret", "application/json", {
        "text": f"kafka_pipeline: task check_params failed in run {run_id} (try 1)\n{error}",
        "dag_id": "kafka_pipeline", "run_id": run_id, "task_id": "check_params", "map_index": -1,
        "try_number": 1, "error": error, "discrepancies": [],
    })]


def test_a_run_that_does_not_reconcile_is_posted_with_its_discrepancy(tmp_path, webhook):
    # The stages marked success, not run: they leave no result, which reconcile finds.
    run = in_process.run_dag(
        environment(tmp_path, webhook), "kafka_pipeline", DATE, {},
        mark_success="^(create_topics|generate|wait_for_orders|process|analyze|sink)$",
    )
    assert run.state == "failed"
    (run_id,) = in_process.run_ids("kafka_pipeline")
    (manifest,) = (tmp_path / "output" / "runs").iterdir()
    assert json.loads(manifest.read_text())["reconciled"] is False
    problem = "no result from process, analyze, sink in this run: reconcile needs every stage to have run"
    assert received(webhook) == [("/services/T0/B0/secret", "application/json", {
        "text": f"kafka_pipeline: run {run_id} does not reconcile (1 discrepancy):\n• {problem}\n"
                f"manifest: {manifest}",
        "dag_id": "kafka_pipeline", "run_id": run_id, "task_id": "reconcile", "map_index": -1,
        "try_number": 1, "error": f"run {run_id} does not reconcile (manifest: {manifest}):\n  {problem}",
        "discrepancies": [problem],
    })]
