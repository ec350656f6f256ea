"""The DAGs run by a real Airflow (scheduler, LocalExecutor, triggerer, api-server: `scripts/airflow
standalone`), driven through the REST API, against a real broker; checked with kafka-python.

One Airflow and one broker for the module (starting them is most of its time). Every test checks
its own runs and the metrics of everything counted so far, so each also runs alone.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psutil
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from include.pipeline import settings, stages
from include.pipeline.domain import generator
from include.pipeline.kafka_io.client import Kafka
from include.pipeline.run.results import run_results
from include.pipeline.stages import state
from kafka_stages.pipeline import POOL_SLOTS
from tests.harness.expected import check_metrics
from tests.harness.factories import order_value
from tests.harness.live_airflow import ROOT, live_stack
from tests.harness.pipeline import Pipeline
from tests.harness.task_logs import BOUNDED_STAGES, check_task_logs

pytestmark = pytest.mark.integration

DAGS = {"kafka_pipeline", "kafka_pipeline_on_orders", "kafka_pipeline_replay", "kafka_pipeline_stream"}
THRESHOLD = 2000  # the watcher's min_records here (KAFKA_PIPELINE_ON_ORDERS_MIN_RECORDS)
STAGES = ["process", "analyze", "sink"]
# The stages' groups, and the one create_topics marks analyze-state migrated in (state.MIGRATED).
PIPELINE_GROUPS = {
    "kafka-pipeline-process", "kafka-pipeline-analyze", "kafka-pipeline-sink", state.MIGRATED,
}
PROCESS_GROUP = "kafka-pipeline-process"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with live_stack(
        tmp_path_factory.mktemp("live"), DAGS,
        KAFKA_PIPELINE_ON_ORDERS_MIN_RECORDS=str(THRESHOLD),
        KAFKA_PIPELINE_ON_ORDERS_MAX_WAIT_SECONDS="3600",  # only the threshold fires here
        # What a check that no run started waits for: the watcher's looks (at DEBUG, as the
        # triggerer logs a watcher's lines too), then a loop of the triggerer and of the scheduler
        # (heartbeats every second, not every 5).
        AIRFLOW__LOGGING__NAMESPACE_LEVELS="kafka_stages.triggers=DEBUG,airflow.jobs.triggerer_job_runner=DEBUG",
        AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC="1", AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="1",
    ) as (airflow, pipeline):
        # The topics, as create_topics makes them: a test that produces first also runs alone.
        stages.create_topics(Kafka({"bootstrap.servers": pipeline.bootstrap}))
        yield airflow, pipeline


def orders_ends(pipeline: Pipeline) -> dict[TopicPartition, int]:
    """The last stable offsets of the orders topic."""
    consumer = KafkaConsumer(**pipeline.client, isolation_level="read_committed")
    partitions = consumer.partitions_for_topic(settings.ORDERS)
    ends = consumer.end_offsets([TopicPartition(settings.ORDERS, p) for p in partitions])
    consumer.close()
    return ends


def orders_events(airflow) -> list[dict]:
    """The asset events of the orders topic, the watcher's, oldest first (the stage tasks' outlets
    have events of their own)."""
    events = airflow.get("/assets/events", limit=1000, order_by="timestamp")["asset_events"]
    return [event for event in events if event["uri"].endswith(f"/{settings.ORDERS}")]


def wait_for_a_look(airflow, log: Path, pipeline: Pipeline, caught_up: bool = False) -> None:
    """Until the watcher has looked at every order produced so far (with the process group at
    their end, if ``caught_up``), and the run of an event it fired would exist: the triggerer has
    since passed its events on (to the metadata DB) and the scheduler made runs of them."""
    end = sum(orders_ends(pipeline).values())
    wait_for_line(log, f"looked: {settings.ORDERS} ends at {end}, its group {PROCESS_GROUP} at "
                  + (f"{end} (" if caught_up else ""))
    airflow.wait_for_loops("triggerer", "scheduler")


def test_kafka_pipeline_triggered_through_the_rest_api_with_and_without_a_logical_date(live):
    airflow, pipeline = live
    hour = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    with_date = airflow.trigger(
        "kafka_pipeline", {"orders": 3000, "seed": 21, "invalid_ratio": 0.1}, logical_date=hour.isoformat()
    )
    without_date = airflow.trigger("kafka_pipeline", {"orders": 2000, "seed": 22})
    airflow.set_paused("kafka_pipeline", False)  # also lets the scheduler add the latest hourly run
    runs = {run["dag_run_id"]: run for run in airflow.wait_until_idle("kafka_pipeline", timeout=150)}

    assert runs[with_date]["logical_date"] is not None and runs[without_date]["logical_date"] is None
    all_tasks = ["check_params", "create_topics", "generate", "wait_for_orders", *BOUNDED_STAGES, "reconcile"]
    for run_id, run in runs.items():
        assert run["state"] == "success", (run_id, airflow.tasks("kafka_pipeline", run_id))
        assert airflow.tasks("kafka_pipeline", run_id) == {task: ("success", 1) for task in all_tasks}
    for run_id, orders in ((with_date, 3000), (without_date, 2000)):
        summary = pipeline.manifest(run_id)
        assert summary["reconciled"] is True
        assert (summary["summary"]["generated"], summary["summary"]["processed"]) == (orders, orders)
        assert run_results(summary["stages"]) == run_results({
            stage: airflow.xcom("kafka_pipeline", run_id, stage) for stage in summary["stages"]
        })
        check_task_logs(airflow, pipeline, run_id)
    # Each run's orders are exactly what the generator makes of its params and its hour; the run
    # without a data interval gets the hour before it was triggered.
    after = datetime.fromisoformat(runs[without_date]["run_after"])
    topic = Counter(r.value for r in pipeline.read(settings.ORDERS))
    for start, end, conf in ((hour - timedelta(hours=1), hour, (3000, 0.1, 21)),
                             (after - timedelta(hours=1), after, (2000, 0.05, 22))):
        mine = Counter(
            value for _, value in generator.orders(conf[0], start, end, invalid_ratio=conf[1], seed=conf[2])
        )
        assert mine - topic == Counter()
    check_metrics(pipeline)


def test_the_sensor_skips_the_stages_when_nothing_is_new(live):
    airflow, pipeline = live
    airflow.set_paused("kafka_pipeline", False)
    airflow.wait_until_idle("kafka_pipeline", timeout=150)  # the hourly run unpausing may add
    before = (
        pipeline.output.joinpath("metrics.json").read_bytes()
        if pipeline.output.joinpath("metrics.json").exists() else None
    )
    run_id = airflow.trigger("kafka_pipeline", {"orders": 0})
    assert airflow.wait_for_run("kafka_pipeline", run_id)["state"] == "success"
    tasks = airflow.tasks("kafka_pipeline", run_id)
    assert tasks == {
        "check_params": ("success", 1), "create_topics": ("success", 1), "generate": ("success", 1),
        "wait_for_orders": ("skipped", 1), "process": ("skipped", 0), "analyze": ("skipped", 0),
        "sink": ("skipped", 0), "reconcile": ("skipped", 0),
    }
    assert "nothing to do: no records on orders (group kafka-pipeline-process)" in airflow.task_log(
        "kafka_pipeline", run_id, "wait_for_orders"
    )
    after = pipeline.output.joinpath("metrics.json")
    assert (after.read_bytes() if after.exists() else None) == before


def test_a_conf_mistake_fails_the_run_at_once_without_retries(live):
    airflow, _ = live
    airflow.set_paused("kafka_pipeline", False)
    airflow.wait_until_idle("kafka_pipeline", timeout=150)
    run_id = airflow.trigger("kafka_pipeline", {"ordrs": 10})
    assert airflow.wait_for_run("kafka_pipeline", run_id)["state"] == "failed"
    tasks = airflow.tasks("kafka_pipeline", run_id)
    assert tasks.pop("check_params") == ("failed", 1)
    assert set(tasks.values()) == {("upstream_failed", 0)}
    log = airflow.task_log("kafka_pipeline", run_id, "check_params")
    assert (
        "unknown param 'ordrs': the valid ones are dedup_horizon_seconds, grace_seconds, invalid_ratio" in log
    )
    # A value of the wrong type is refused by Airflow when the run is created.
    response = airflow.api(
        "POST", "/dags/kafka_pipeline/dagRuns", json={"logical_date": None, "conf": {"orders": -5}}
    )
    assert response.status_code == 400, response.text


def test_orders_past_the_threshold_start_one_run_of_the_event_driven_dag(live):
    airflow, pipeline = live
    airflow.set_paused("kafka_pipeline", True)
    airflow.wait_until_idle("kafka_pipeline", timeout=150)
    airflow.set_paused("kafka_pipeline_on_orders", False)
    known = {run["dag_run_id"] for run in airflow.runs("kafka_pipeline_on_orders")}
    events_before = len(orders_events(airflow))
    now = datetime.now(timezone.utc).replace(microsecond=0)
    amounts = ["19.99", "0.01", "1234.50", "7", "350.125"]
    valid = [
        (f"w-{i}".encode(), order_value(
            f"w-{i}", f"prod-{i % 5 + 1}", amounts[i % 5], (now - timedelta(seconds=i % 900)).isoformat()
        ))
        for i in range(THRESHOLD + 400)
    ]
    invalid = [(f"bad-{i}".encode(), b"not json") for i in range(25)]
    pipeline.produce(settings.ORDERS, valid[:500])
    wait_for_a_look(airflow, airflow.log, pipeline)  # below the threshold (and the max wait): no run
    assert {run["dag_run_id"] for run in airflow.runs("kafka_pipeline_on_orders")} == known
    pipeline.produce(settings.ORDERS, valid[500:] + invalid)
    produced_at = time.monotonic()

    deadline = time.monotonic() + 120
    while not (new := [r for r in airflow.runs("kafka_pipeline_on_orders") if r["dag_run_id"] not in known]):
        assert time.monotonic() < deadline, f"no run started:\n{airflow.tail()}"
        time.sleep(1)
    run = airflow.wait_for_run("kafka_pipeline_on_orders", new[0]["dag_run_id"])
    print(f"last order produced -> run finished: {time.monotonic() - produced_at:.1f}s")
    assert run["state"] == "success", airflow.tasks("kafka_pipeline_on_orders", run["dag_run_id"])
    # A watcher that fired again for the same backlog (before the run caught up with it) would
    # have started another run once this one finished.
    wait_for_a_look(airflow, airflow.log, pipeline, caught_up=True)
    assert [
        r["dag_run_id"] for r in airflow.runs("kafka_pipeline_on_orders") if r["dag_run_id"] not in known
    ] == [run["dag_run_id"]]

    events = orders_events(airflow)[events_before:]
    assert [(e["extra"]["from_trigger"], e["extra"]["payload"]["reason"]) for e in events] == [
        (True, "min_records")
    ]
    assert events[0]["extra"]["payload"]["records"] >= THRESHOLD
    summary = pipeline.manifest(run["dag_run_id"], "kafka_pipeline_on_orders")
    assert summary["reconciled"] is True
    assert {k: summary["summary"][k] for k in ("generated", "processed", "valid", "invalid", "counted")} == {
        "generated": 0, "processed": len(valid) + len(invalid), "valid": len(valid), "invalid": len(invalid),
        "counted": len(valid),
    }
    dead = {r.key: r.headers["reason"] for r in pipeline.read(settings.DLQ) if r.key.startswith(b"bad-")}
    assert dead == {key: b"invalid_json" for key, _ in invalid}
    assert Decimal(summary["stages"]["analyze"]["counted_revenue"]) == sum(
        Decimal(amounts[i % 5]) for i in range(len(valid))
    )
    check_metrics(pipeline)
    # The watcher only looked: no group of its own, and the process group is where the run left it.
    admin = KafkaAdminClient(bootstrap_servers=pipeline.bootstrap)
    assert {group["group_id"] for group in admin.list_groups()} <= PIPELINE_GROUPS
    committed = admin.list_group_offsets("kafka-pipeline-process")["kafka-pipeline-process"]
    admin.close()
    read = summary["stages"]["process"]["input"]["partitions"]
    assert {tp.partition: meta.offset for tp, meta in committed.items() if tp.topic == settings.ORDERS} == {
        int(partition): end for partition, (_, end) in read.items()
    }


def test_the_stream_dag_streams_the_stages_together_then_hands_over_a_reconciled_run(live):
    airflow, pipeline = live
    airflow.set_paused("kafka_pipeline", True)
    for dag_id in ("kafka_pipeline", "kafka_pipeline_on_orders"):
        airflow.wait_until_idle(dag_id, timeout=150)
    started = datetime.now(timezone.utc)
    run_id, run = airflow.run_latest_hour(
        "kafka_pipeline_stream", {"duration_seconds": 60, "rate": 100}, now=started
    )
    streaming = ["generate", *STAGES]
    assert run["state"] == "success", airflow.tasks("kafka_pipeline_stream", run_id)
    assert airflow.tasks("kafka_pipeline_stream", run_id) == {
        task: ("success", 1)
        for task in ["check_params", "create_topics", "generate", *BOUNDED_STAGES, "reconcile"]
    }
    assert [
        r["dag_run_id"] for r in airflow.runs("kafka_pipeline_stream")
        # Not the run of an hour that ended since (its logical date, the hour's start, is before it).
        if datetime.fromisoformat(r["data_interval_end"]) <= started
    ] == [run_id]
    # Together: every stage ran while the generator did.
    instances = airflow.get(f"/dags/kafka_pipeline_stream/dagRuns/{run_id}/taskInstances")["task_instances"]
    times = {
        ti["task_id"]: (ti["start_date"], ti["end_date"]) for ti in instances if ti["task_id"] in streaming
    }
    assert all(times[stage][0] < times["generate"][1] for stage in STAGES), times

    summary = pipeline.manifest(run_id, "kafka_pipeline_stream")
    assert summary["reconciled"] is True, summary["problems"]
    result = summary["stages"]
    generated = result["generate"]["generated"]
    assert generated >= 1000, generated  # 100 a second for most of the minute
    # Each stage ended after the one before it, having read all it wrote: nothing left over.
    assert result["process"]["read"] == generated
    assert result["analyze"]["read"] == result["process"]["valid"] == result["analyze"]["counted"]
    assert result["analyze"]["written"][settings.METRICS] > 0
    for stage, before in zip(BOUNDED_STAGES, streaming):  # process and analyze: one instance each
        log = airflow.task_log("kafka_pipeline_stream", run_id, stage)
        assert f"{before} has finished: reading what it wrote, then stopping" in log
    check_metrics(pipeline)


def set_pool_slots(airflow, slots: int) -> None:
    # Airflow validates the body as a whole pool; the mask changes the slots alone.
    body = {"pool": "kafka_pipeline", "slots": slots, "include_deferred": False}
    response = airflow.api("PATCH", "/pools/kafka_pipeline", json=body, params={"update_mask": "slots"})
    response.raise_for_status()


def wait_for_line(log: Path, *texts: str, timeout: float = 120) -> str:
    """The first of ``texts`` to appear in the log."""
    deadline = time.monotonic() + timeout
    while not (found := [text for text in texts if text in log.read_text(errors="replace")]):
        assert time.monotonic() < deadline, f"none of {texts} in {log} after {timeout}s"
        time.sleep(0.5)
    return found[0]


def standalone_triggerer(airflow) -> psutil.Process:
    """Standalone's triggerer component (scripts/airflow runs standalone as its child), not the
    trigger runner that component starts (a triggerer process too, its child)."""
    for process in airflow.processes():
        try:
            if "triggerer" in process.cmdline() and "triggerer" not in process.parent().cmdline():
                return process
        except psutil.NoSuchProcess:  # a task's process that ended meanwhile (seen in CI)
            continue
    raise AssertionError(f"no triggerer among {[p.pid for p in airflow.processes()]}")


def stop(process: psutil.Process) -> None:
    """SIGTERM, then wait until it and its children have exited (a zombie has: its parent reaps it)."""
    def running(p: psutil.Process) -> bool:
        try:
            return p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    processes = [process, *process.children(recursive=True)]
    process.terminate()
    deadline = time.monotonic() + 60
    while any(map(running, processes)):
        assert time.monotonic() < deadline, f"{process} did not stop"
        time.sleep(0.2)


def test_the_watcher_remembers_its_backlog_across_a_triggerer_restart(live):
    """One backlog, one run, also when the triggerer restarts between the event and the run
    consuming it. Last in the module: the module's Airflow has no triggerer after it."""
    airflow, pipeline = live
    airflow.set_paused("kafka_pipeline", True)
    for dag_id in ("kafka_pipeline", "kafka_pipeline_on_orders"):
        airflow.wait_until_idle(dag_id, timeout=150)
    airflow.set_paused("kafka_pipeline_on_orders", False)
    # Standalone's triggerer runs the watcher (and fires for the backlog below).
    wait_for_line(airflow.log, f"watching the lag of orders (group {PROCESS_GROUP}): firing at {THRESHOLD} ")
    known = {run["dag_run_id"] for run in airflow.runs("kafka_pipeline_on_orders")}
    events_before = len(orders_events(airflow))
    now = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    orders = [
        (f"t-{i}".encode(), order_value(f"t-{i}", f"prod-{i % 5 + 1}", "2.5", now))
        for i in range(THRESHOLD + 100)
    ]

    def new_runs() -> list[str]:
        return [run["dag_run_id"] for run in airflow.runs("kafka_pipeline_on_orders")
                if run["dag_run_id"] not in known]

    # The triggerer to restart on (standalone restarts no component): it starts up meanwhile and
    # takes the watcher over once standalone's triggerer stops. No log server: that one has the port.
    log, old = airflow.home / "triggerer-2.log", standalone_triggerer(airflow)
    with log.open("wb") as out:
        triggerer = subprocess.Popen(
            [str(ROOT / "scripts/airflow"), "triggerer", "--skip-serve-logs"], env=old.environ(),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    set_pool_slots(airflow, 0)  # the run starts, but its stages wait for the pool: nothing consumed
    try:
        pipeline.produce(settings.ORDERS, orders)
        deadline = time.monotonic() + 90
        while not (runs := new_runs()):
            assert time.monotonic() < deadline, f"no run started:\n{airflow.tail()}"
            time.sleep(1)
        wait_for_line(log, "Starting the triggerer")
        stop(old)  # the restart: the watcher starts again in the other triggerer
        wait_for_a_look(airflow, log, pipeline)  # the first look of the watcher started again
        assert new_runs() == runs
        events = orders_events(airflow)[events_before:]
        assert [e["extra"]["payload"]["reason"] for e in events] == ["min_records"]
        assert events[0]["extra"]["payload"]["records"] >= THRESHOLD
        assert "remembering what it fired for before a restart: orders up to offsets" in log.read_text()

        set_pool_slots(airflow, POOL_SLOTS)
        run = airflow.wait_for_run("kafka_pipeline_on_orders", runs[0])
        assert run["state"] == "success", airflow.tasks("kafka_pipeline_on_orders", runs[0])
        summary = pipeline.manifest(runs[0], "kafka_pipeline_on_orders")
        assert summary["reconciled"] is True and summary["summary"]["processed"] == len(orders)
        assert new_runs() == runs
        admin = KafkaAdminClient(**pipeline.client)
        committed = admin.list_group_offsets(PROCESS_GROUP)[PROCESS_GROUP]
        admin.close()
        ends = orders_ends(pipeline)
        assert {tp: meta.offset for tp, meta in committed.items() if tp.topic == settings.ORDERS} == ends
    finally:
        set_pool_slots(airflow, POOL_SLOTS)
        stop(psutil.Process(triggerer.pid))
        triggerer.wait()
