"""What the task logs of a live Airflow (live_airflow.py) end with: each stage's (each instance's)
with its summary, reconcile's with the run's and the page's link."""

from __future__ import annotations

import msgspec

from include.pipeline.run import reconcile
from include.pipeline.run import summary as stage_summary
from include.pipeline.run.results import run_results
from tests.harness.pipeline import Pipeline

BOUNDED_STAGES = ["process[0]", "analyze[0]", "sink"]  # as a run with one worker names its stage tasks


def check_task_logs(airflow, pipeline: Pipeline, run_id: str, stages: list[str] = BOUNDED_STAGES) -> None:
    """Each stage's log (each instance's, ``process[1]``) ends with its summary, and reconcile's
    with the run's and the page's link."""
    for name in ("generate", *stages):
        stage, _, index = name.rstrip("]").partition("[")
        pushed = airflow.xcom("kafka_pipeline", run_id, stage)
        result = getattr(run_results({stage: pushed[int(index)] if index else pushed}), stage)
        lines = stage_summary.lines(stage, result)
        log = airflow.task_log("kafka_pipeline", run_id, name).splitlines()
        assert ours(log)[-len(lines):] == lines, name
    log = ours(airflow.task_log("kafka_pipeline", run_id, "reconcile").splitlines())
    path = pipeline.output / "runs" / reconcile.manifest_path("kafka_pipeline", run_id).name
    summary = reconcile.render(msgspec.json.decode(path.read_bytes(), type=reconcile.Manifest)).splitlines()
    port = airflow.url.rsplit(":", 1)[1]
    assert log[-len(summary) - 2:] == [
        *summary, f"manifest: {path}",
        f"Order metrics page: http://localhost:{port}/plugin/order-metrics",
    ]


def ours(log: list[str]) -> list[str]:
    """The task's own lines: up to the group the task runner logs after the task returns."""
    return log[:len(log) - log[::-1].index("::group::Post Execute") - 1]
