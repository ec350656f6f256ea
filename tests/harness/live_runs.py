"""Runs of the DAGs on a live Airflow (live_airflow.py) and what is checked after them: a stream run
started and streaming, the stream DAG paused with its runs ended, the bounded DAG's runs drained;
no transaction left open, every order in exactly one place and the metrics the oracle's. Shared by
the operations tests (test_operations*.py, test_restart_mark_failed.py)."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import RetriableError

from include.pipeline import settings
from tests.harness.expected import check_metrics
from tests.harness.pipeline import Pipeline

DAGS = {"kafka_pipeline", "kafka_pipeline_stream"}
STREAM, BOUNDED = "kafka_pipeline_stream", "kafka_pipeline"
STAGES = ("generate", "process", "analyze", "sink")
# seconds: standalone stopped, nothing of it runs any more. scripts/airflow kills what of Airflow
# runs 20 s after its SIGTERM; on a loaded machine (CI: 2 cores, 3 test files at once) each of its
# looks at what is left takes a few seconds, and a stage task can use all 20 (measured: 19.9 s).
STOP_WITHIN = 45
# For the stacks of the tests whose runs pick their own logical dates (``stream_run``,
# ``free_logical_date``; not ``run_latest_hour``, whose run must be the scheduler's next one): the
# DAG files parsed every 10 minutes, not every 30 s (an idle stack's CPU 0.32 -> 0.22 of a core,
# measured). With every stack parsing so seldom (CI of d5014ae), test_scheduler's stream run,
# triggered just after an hour ended, ran beside a scheduled run of that hour and never started.
SELDOM_PARSED = {"AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600"}
# A transaction a second, not the default's ten: these tests stop, kill and cut off a stream, they do
# not time it (test_stream does); at 100 orders a second the broker then works a third as hard.
COMMIT_INTERVAL_MS = 1000


def restart(airflow) -> None:
    """Start standalone again and wait until it is ready to run the DAGs."""
    airflow.start()
    airflow.wait_until_ready(DAGS)


def open_transactions(pipeline: Pipeline) -> dict:
    """(topic, partition) -> (last stable offset, log end offset) wherever they differ: a
    transaction left open. kafka-python, independent of the pipeline's client."""
    stable = KafkaConsumer(**pipeline.client, isolation_level="read_committed")
    written = KafkaConsumer(**pipeline.client, isolation_level="read_uncommitted")
    try:
        tps = [
            TopicPartition(t, p) for t in settings.TOPIC_CONFIGS for p in stable.partitions_for_topic(t) or ()
        ]
        ends, logs = stable.end_offsets(tps), written.end_offsets(tps)
    finally:
        stable.close()
        written.close()
    return {(tp.topic, tp.partition): (ends[tp], logs[tp]) for tp in tps if ends[tp] != logs[tp]}


def wait_for_stages(
    airflow, dag_id: str, run_id: str, stages, try_at_least: int = 1, timeout: float = 180,
    alone: bool = False,
) -> dict:
    """Once each of ``stages`` runs (at that try or a later one): task id -> its pid. ``alone``:
    any other run of the DAG that is not finished is marked failed meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        if alone:
            airflow.fail_runs(dag_id, but=run_id)
        tis = airflow.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        running = {
            ti["task_id"]: ti["pid"] for ti in tis
            if ti["task_id"] in stages and ti["state"] == "running" and ti["pid"]
            and ti["try_number"] >= try_at_least
        }
        if len(running) == len(stages):
            return running
        assert time.monotonic() < deadline, f"{airflow.tasks(dag_id, run_id)}\n{airflow.tail()}"
        time.sleep(1)


def group_committed(pipeline: Pipeline, stage: str, topic: str) -> int:
    group = f"kafka-pipeline-{stage}"
    admin = KafkaAdminClient(**pipeline.client)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                offsets = admin.list_group_offsets(group).get(group, {})
                break
            # A fresh broker creates its offsets topic first; one started again loads it (seen in CI:
            # CoordinatorLoadInProgressError for the group the test before it had committed in).
            except RetriableError:
                assert time.monotonic() < deadline, f"no coordinator for {group} after 60s"
                time.sleep(0.5)
    finally:
        admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)


def free_logical_date(airflow) -> str:
    """The latest complete hour no stream run has yet (an earlier one if an earlier test took it)."""
    taken = {run["logical_date"] for run in airflow.runs(STREAM)}
    latest = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    while any(taken_at and datetime.fromisoformat(taken_at) == latest for taken_at in taken):
        latest -= timedelta(hours=1)
    return latest.isoformat()


def pause_stream(airflow) -> None:
    """The stream DAG paused and every run of it ended, its tasks stopped. An unpaused stream DAG
    gets the scheduled run of each hour that ends, and of the latest hour when it is unpaused; it
    streams for most of an hour by default: it would hold the DAG's one active run and the pool's
    slots from what a test runs next."""
    airflow.set_paused(STREAM, True)
    going = airflow.fail_runs(STREAM)
    deadline = time.monotonic() + 60  # a retry that started meanwhile is stopped too
    while any(state == "running" for run_id in going for state, _ in airflow.tasks(STREAM, run_id).values()):
        assert time.monotonic() < deadline, {run_id: airflow.tasks(STREAM, run_id) for run_id in going}
        time.sleep(1)


def stream_run(airflow, pipeline, conf: dict) -> str:
    """A stream run triggered and streaming: its four stages running, analyze 500 orders on. A
    run the scheduler adds once the DAG is unpaused is marked failed: it could start first."""
    pause_stream(airflow)
    before = group_committed(pipeline, "analyze", settings.PROCESSED)
    conf = {"commit_interval_ms": COMMIT_INTERVAL_MS, **conf}
    run_id = airflow.trigger(STREAM, conf, logical_date=free_logical_date(airflow))
    airflow.set_paused(STREAM, False)
    wait_for_stages(airflow, STREAM, run_id, STAGES, alone=True)
    deadline = time.monotonic() + 120
    while group_committed(pipeline, "analyze", settings.PROCESSED) < before + 500:
        assert time.monotonic() < deadline, airflow.tasks(STREAM, run_id)
        time.sleep(1)
    return run_id


def drain(airflow) -> list[dict]:
    """Let kafka_pipeline's runs go (its latest hourly run and one triggered with no new orders)
    until every run has ended; returns their manifests' summaries."""
    run_id = airflow.trigger(BOUNDED, {"orders": 0})
    airflow.set_paused(BOUNDED, False)
    try:
        runs = airflow.wait_until_idle(BOUNDED, timeout=300)
    finally:
        airflow.set_paused(BOUNDED, True)
    assert run_id in {run["dag_run_id"] for run in runs}
    failed = [run["dag_run_id"] for run in runs if run["state"] != "success"]
    assert failed == [], {run_id: airflow.tasks(BOUNDED, run_id) for run_id in failed}
    return runs


def source_position(dead_letter) -> tuple[int, int]:
    return int(dead_letter.headers["source.partition"]), int(dead_letter.headers["source.offset"])


def assert_every_order_once_and_the_metrics_exact(pipeline: Pipeline) -> None:
    """Each orders record is in exactly one place: processed-orders (by key and order id) or
    orders-dlq (by its source position); the metrics equal, to the cent, those of every order
    analyze counted (computed here from the topics)."""
    source = pipeline.read(settings.ORDERS)
    processed = pipeline.read(settings.PROCESSED)
    dead = pipeline.read(settings.DLQ)
    from_orders = [r for r in dead if r.headers["source.topic"] == settings.ORDERS.encode()]
    positions = Counter(source_position(r) for r in from_orders)
    assert max(positions.values(), default=1) == 1, "an order dead-lettered twice"
    by_position = {(r.partition, r.offset): r for r in source}
    assert all(by_position[source_position(r)].value == r.value for r in from_orders)
    ids = Counter((r.key, r.json()["order_id"]) for r in processed)
    assert max(ids.values(), default=1) == 1, "an order processed twice"
    not_dead = Counter(
        (r.key, json.loads(r.value)["order_id"]) for at, r in by_position.items() if at not in positions
    )
    assert ids == not_dead, "processed-orders is not the orders that were not dead-lettered"
    assert len(source) == len(processed) + len(from_orders)
    check_metrics(pipeline)
