"""The documented DAG of a user scheduled on the metrics store's asset (docs/examples/
metrics_report.py, shown in docs/operations/observability.md) in a real Airflow (`scripts/airflow
standalone`, the examples folder as a second DAG bundle) against a real broker: run by the
scheduler after a `kafka_pipeline` run whose sink succeeded, triggered by that sink; not after one
whose sink did not run."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.harness.live_airflow import ROOT, live_stack, with_bundle

pytestmark = pytest.mark.integration

REPORT = "metrics_report"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with live_stack(
        tmp_path_factory.mktemp("live"), {"kafka_pipeline", REPORT},
        **with_bundle("examples", ROOT / "docs/examples"),
        # wait_for_loops: a scheduler loop heartbeats every second, not every 5.
        AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="1",
    ) as (airflow, pipeline):
        yield airflow, pipeline


def test_a_dag_scheduled_on_the_store_runs_after_each_sink_that_succeeds(live):
    airflow, pipeline = live
    store = f"file://{(pipeline.output / 'metrics.db').resolve()}"
    airflow.set_paused(REPORT, False)
    airflow.wait_for_loops("scheduler")  # unpaused, with no event of the store: no run
    assert airflow.runs(REPORT) == []

    run_id, run = airflow.run_latest_hour("kafka_pipeline", {"orders": 500, "seed": 34})
    assert run["state"] == "success", airflow.tasks("kafka_pipeline", run_id)
    assert airflow.tasks("kafka_pipeline", run_id)["sink"] == ("success", 1)
    # The sink's event queued a run of the report in the metadata DB: the next whole scheduler
    # loop creates it.
    airflow.wait_for_loops("scheduler")
    reports = airflow.runs(REPORT)
    assert [r["run_type"] for r in reports] == ["asset_triggered"], reports
    report_id = reports[0]["dag_run_id"]
    assert airflow.wait_for_run(REPORT, report_id)["state"] == "success", airflow.tasks(REPORT, report_id)
    events = airflow.get(f"/dags/{REPORT}/dagRuns/{report_id}/upstreamAssetEvents")["asset_events"]
    assert [
        (e["uri"], e["source_dag_id"], e["source_task_id"], e["source_run_id"], e["source_map_index"])
        for e in events
    ] == [(store, "kafka_pipeline", "sink", run_id, -1)]
    assert f"{store} ['{run_id}']" in airflow.task_log(REPORT, report_id, "report").splitlines()

    # A run with nothing new skips its stages: no sink, no event, no report. Its logical date is
    # an hour before the first's (the scheduler, on unpausing, finds the latest hour's run there).
    skipped_id, skipped = airflow.run_latest_hour(
        "kafka_pipeline", {"orders": 0}, now=datetime.fromisoformat(run["logical_date"])
    )
    assert skipped["state"] == "success", airflow.tasks("kafka_pipeline", skipped_id)
    assert airflow.tasks("kafka_pipeline", skipped_id)["sink"] == ("skipped", 0)
    airflow.wait_for_loops("scheduler")
    assert [r["dag_run_id"] for r in airflow.runs(REPORT)] == [report_id]
