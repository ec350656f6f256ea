"""Operations through a real Airflow (`scripts/airflow standalone`, driven through the REST API)
and a real broker: standalone stopped or killed in the middle of a run, started again, a stage's
supervisor killed, a run marked failed, the broker stopped for a while, the API server frozen so
that no heartbeat is answered. Afterwards no process of it is left, no transaction is left open,
and the next runs end with the metrics of every counted order, each order processed or
dead-lettered once.

One Airflow and one broker for the module; each test leaves Airflow running, so each also runs
alone.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import psutil
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import RetriableError

from include.pipeline import settings
from tests.integration.conftest import Pipeline
from tests.integration.expected import assert_as_the_oracle_says, oracle_of_topics
from tests.integration.live_airflow import live_stack

pytestmark = pytest.mark.integration

DAGS = {"kafka_pipeline", "kafka_pipeline_stream"}
STREAM, BOUNDED = "kafka_pipeline_stream", "kafka_pipeline"
STAGES = ("generate", "process", "analyze", "sink")
INSTANCES = ("generate", "process[0]", "analyze[0]", "sink")  # a stream run's, with one worker
# process had read 30,000-55,000 of them when the stop reached it (measured): it stops mid-run.
BOUNDED_ORDERS = 200_000
STOP_WITHIN = 30  # seconds: standalone stopped, nothing of it runs any more
MARKED_FAILED_WITHIN = 15  # seconds: a run marked failed, none of its stage tasks runs any more
OUTAGE = 30  # seconds the broker is stopped in the middle of a stream run
# The API server frozen, a task's supervisor gives up after its failed heartbeats, then stops the
# task. After one here, not the default 3 (about 2.5 minutes in all,
# docs/operations/stopping-and-recovering.md): the same rule in a third of the time. Each
# heartbeat keeps its 5 retries with backoff: a busy API server's first answers take longer than a
# request's 5 s timeout.
FAILED_HEARTBEATS = "1"
HEARTBEATS_LOST_WITHIN = 120
# A transaction a second, not the default's ten: these tests stop, kill and cut off a stream, they do
# not time it (test_stream does); at 100 orders a second the broker then works a third as hard.
COMMIT_INTERVAL_MS = 1000
WENT = "does not answer"  # the stage's one line when Kafka goes (kafka_io.Outage) ...
CAME_BACK = "Kafka answers again"  # ... and when it comes back


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    # Nothing here changes a DAG file: parsed every 10 minutes, not every 30 s (a tenth of the
    # module's CPU went to parsing them again).
    with live_stack(
        tmp_path_factory.mktemp("operations"), DAGS, AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL="600",
        AIRFLOW__WORKERS__MAX_FAILED_HEARTBEATS=FAILED_HEARTBEATS,
    ) as stack:
        yield stack


@pytest.fixture(autouse=True)
def started(live):
    """Each test finds Airflow running, even after one that failed while it was stopped."""
    airflow, _ = live
    if not airflow.running():
        restart(airflow)


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


def orders_end(pipeline: Pipeline) -> int:
    """The read_committed end offsets of orders, summed: where process stands once it is done."""
    consumer = KafkaConsumer(**pipeline.client, isolation_level="read_committed")
    try:
        tps = [TopicPartition(settings.ORDERS, p) for p in consumer.partitions_for_topic(settings.ORDERS)]
        return sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close()


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


def restart(airflow) -> None:
    airflow.start()
    airflow.wait_until_ready(DAGS)


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
    assert_as_the_oracle_says(pipeline, oracle_of_topics(pipeline))


def test_standalone_stopped_with_ctrl_c_mid_stream_run_leaves_nothing_and_the_next_runs_end_exact(live):
    airflow, pipeline = live
    run_id = stream_run(airflow, pipeline, {"duration_seconds": 900, "rate": 100})

    assert airflow.stop(signal.SIGINT, within=STOP_WITHIN) == []  # Ctrl-C in the terminal it runs in
    assert open_transactions(pipeline) == {}

    # Started again, the scheduler runs the stream's stages again (the next try). A stage whose
    # supervisor dies stops by itself; marked failed, as a user stops a stream run, every other
    # one ends, whichever try.
    restart(airflow)
    pids = wait_for_stages(airflow, STREAM, run_id, STAGES, try_at_least=2)
    orphan = psutil.Process(pids.pop("generate"))
    orphan.parent().kill()
    _, alive = psutil.wait_procs([orphan], timeout=MARKED_FAILED_WITHIN)
    assert alive == [], "generate ran on without its supervisor"
    airflow.api("PATCH", f"/dags/{STREAM}/dagRuns/{run_id}", json={"state": "failed"}).raise_for_status()
    _, alive = psutil.wait_procs([psutil.Process(pid) for pid in pids.values()], timeout=MARKED_FAILED_WITHIN)
    assert alive == []
    pause_stream(airflow)
    assert open_transactions(pipeline) == {}

    drain(airflow)
    assert_every_order_once_and_the_metrics_exact(pipeline)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_standalone_stopped_or_killed_mid_bounded_run_then_started_again_ends_exact(live, sig):
    """SIGTERM to its group, as a service manager stops it; SIGKILL to every process, as a crash."""
    airflow, pipeline = live
    pause_stream(airflow)
    run_id = airflow.trigger(BOUNDED, {"orders": BOUNDED_ORDERS, "seed": int(sig)})
    airflow.set_paused(BOUNDED, False)
    wait_for_stages(airflow, BOUNDED, run_id, ["process"], timeout=300)
    before = group_committed(pipeline, "process", settings.ORDERS)  # process has not committed yet
    deadline = time.monotonic() + 120
    while (done := group_committed(pipeline, "process", settings.ORDERS)) == before:
        assert time.monotonic() < deadline, airflow.tasks(BOUNDED, run_id)
        time.sleep(0.1)

    assert airflow.stop(sig, within=STOP_WITHIN) == []
    assert done < orders_end(pipeline), "process finished before it was stopped: give it more orders"
    if sig == signal.SIGTERM:
        assert open_transactions(pipeline) == {}  # each stage committed or aborted its batch
    restart(airflow)
    run = airflow.wait_for_run(BOUNDED, run_id, timeout=300)
    assert run["state"] == "success", airflow.tasks(BOUNDED, run_id)
    assert airflow.tasks(BOUNDED, run_id)["process[0]"][1] >= 2  # the stopped try, then the one that finished
    drain(airflow)
    assert open_transactions(pipeline) == {}
    assert_every_order_once_and_the_metrics_exact(pipeline)


def test_broker_stopped_for_30s_mid_stream_run_the_stream_goes_on_and_the_run_ends_exact(live):
    airflow, pipeline = live
    airflow.set_paused(BOUNDED, True)
    run_id = stream_run(airflow, pipeline, {"duration_seconds": 120, "rate": 100})
    pipeline.broker("down")
    time.sleep(OUTAGE)
    pipeline.broker("up")
    run = airflow.wait_for_run(STREAM, run_id, timeout=300)
    pause_stream(airflow)
    tasks = airflow.tasks(STREAM, run_id)
    assert run["state"] == "success", tasks  # reconcile said yes
    tries = {task: tries for task, (_, tries) in tasks.items() if task in INSTANCES}
    assert tries == dict.fromkeys(INSTANCES, 1)
    for stage in INSTANCES:  # each stage saw the outage, said so once, and once when it ended
        log = airflow.task_log(STREAM, run_id, stage)
        assert (log.count(WENT), log.count(CAME_BACK)) == (1, 1), f"{stage}:\n{log}"
    assert open_transactions(pipeline) == {}
    drain(airflow)
    assert_every_order_once_and_the_metrics_exact(pipeline)


def test_a_frozen_api_server_stops_the_stream_stages_once_their_heartbeats_fail(live):
    airflow, pipeline = live
    airflow.set_paused(BOUNDED, True)
    run_id = stream_run(airflow, pipeline, {"duration_seconds": 900, "rate": 100})
    stages = [psutil.Process(pid) for pid in wait_for_stages(airflow, STREAM, run_id, STAGES).values()]
    api_server = [p for p in airflow.processes() if "api_server" in " ".join(p.cmdline())]
    assert api_server, [p.cmdline() for p in airflow.processes()]
    for process in api_server:
        process.suspend()
    try:
        _, alive = psutil.wait_procs(stages, timeout=HEARTBEATS_LOST_WITHIN)
    finally:
        for process in api_server:
            process.resume()
    assert alive == [], "a stage ran on with no heartbeat answered"
    assert open_transactions(pipeline) == {}
    pause_stream(airflow)  # marks the run failed: its retries that started meanwhile stop too
    drain(airflow)
    assert_every_order_once_and_the_metrics_exact(pipeline)
