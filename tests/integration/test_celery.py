"""A kafka_pipeline run with 3 workers under the CeleryExecutor: `scripts/airflow celery-stack 2`
(api-server, scheduler, dag-processor, triggerer and two Celery workers, w1 and w2), its mapped
instances of process and analyze spread over both, with a throwaway Redis as broker and the
metadata DB as result backend, driven through the REST API against a real Kafka broker; checked
with kafka-python, the run's manifest and the workers' own logs.
"""

from __future__ import annotations

import re
import socket
from collections import Counter
from datetime import datetime

import pytest
from airflow.utils.net import get_hostname

from include.pipeline import settings
from include.pipeline.domain import generator
from include.pipeline.run.results import run_results
from tests.harness.expected import check_metrics
from tests.harness.live_airflow import instance_name, live_stack
from tests.harness.task_logs import check_task_logs

pytestmark = pytest.mark.integration

WORKERS = ("w1", "w2")
INSTANCES = 3  # the run's `workers`: process and analyze as 3 mapped instances each
MAPPED = [f"{stage}[{i}]" for stage in ("process", "analyze") for i in range(INSTANCES)]
TASKS = ["check_params", "create_topics", "generate", "wait_for_orders", *MAPPED, "sink", "reconcile"]
ORDERS, INVALID_RATIO, SEED = 2000, 0.1, 41


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    root = tmp_path_factory.mktemp("celery")
    with live_stack(root, {"kafka_pipeline"}, celery_workers=len(WORKERS)) as live:
        yield live


def executed_by(airflow, ti_ids: set[str]) -> dict[str, list[str]]:
    """task instance id -> the workers whose log says they executed it (the provider logs each
    workload it takes, with its task instance's id)."""
    found: dict[str, list[str]] = {ti_id: [] for ti_id in ti_ids}
    for worker in WORKERS:
        log = airflow.worker_log(worker).read_text(errors="replace")
        for line in log.splitlines():
            if "Executing workload in Celery" in line:
                for ti_id in re.findall(r"id=UUID\('([0-9a-f-]{36})'\)", line):
                    if ti_id in found:
                        found[ti_id].append(worker)
    return found


def test_a_run_on_two_celery_workers_counts_every_order_once(live):
    airflow, pipeline = live
    conf = {"orders": ORDERS, "seed": SEED, "invalid_ratio": INVALID_RATIO, "workers": INSTANCES}
    try:
        run_id, run = airflow.run_latest_hour("kafka_pipeline", conf)
    finally:
        airflow.wait_until_idle("kafka_pipeline", timeout=150)
    assert run["state"] == "success", (airflow.tasks("kafka_pipeline", run_id), airflow.tail())
    assert airflow.tasks("kafka_pipeline", run_id) == {task: ("success", 1) for task in TASKS}

    # Every task ran in a Celery worker of the stack: exactly one of w1 and w2 took each (Redis
    # hands the queue's messages to the waiting workers in turn, so both take some).
    instances = airflow.get(f"/dags/kafka_pipeline/dagRuns/{run_id}/taskInstances")["task_instances"]
    by = executed_by(airflow, {ti["id"] for ti in instances})
    assert {instance_name(ti): len(by[ti["id"]]) for ti in instances} == dict.fromkeys(TASKS, 1), by
    ran_on = {instance_name(ti): by[ti["id"]][0] for ti in instances}
    print("task -> worker:", ran_on)
    # The mapped instances ran at once, on both workers.
    assert {ran_on[name] for name in MAPPED} == set(WORKERS), ran_on
    # The workers run on this host: the task instances' hostname is its name (as Airflow finds it:
    # one name for every worker of a host), and the workers' Celery node names are w1@ and w2@ it.
    assert {ti["hostname"] for ti in instances} == {get_hostname()}
    for worker in WORKERS:
        assert f"{worker}@{socket.gethostname()} ready." in airflow.worker_log(worker).read_text()

    # Exact: every order generated was processed and the stages' counts add up (reconciled).
    summary = pipeline.manifest(run_id)
    assert summary["reconciled"] is True, summary["problems"]
    assert (summary["summary"]["generated"], summary["summary"]["processed"]) == (ORDERS, ORDERS)
    assert run_results(summary["stages"]) == run_results({
        stage: airflow.xcom("kafka_pipeline", run_id, stage) for stage in summary["stages"]
    })
    # Each instance read its own third of the partitions of its input.
    for stage in ("process", "analyze"):
        pushed = airflow.xcom("kafka_pipeline", run_id, stage)
        shares = [sorted(map(int, instance["input"]["partitions"])) for instance in pushed]
        assert shares == [[0, 3], [1, 4], [2, 5]], stage
    assert summary["summary"]["valid"] + summary["summary"]["invalid"] == ORDERS
    # The orders are exactly what the generator makes of the params and the run's data interval.
    start, end = (datetime.fromisoformat(run[f"data_interval_{edge}"]) for edge in ("start", "end"))
    mine = Counter(
        value for _, value in generator.orders(ORDERS, start, end, invalid_ratio=INVALID_RATIO, seed=SEED)
    )
    assert mine - Counter(r.value for r in pipeline.read(settings.ORDERS)) == Counter()
    # The logs the workers wrote, read through the API server; the metrics to the cent.
    check_task_logs(airflow, pipeline, run_id, stages=[*MAPPED, "sink"])
    check_metrics(pipeline)
