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

import signal
import time

import psutil
import pytest
from kafka import KafkaConsumer, TopicPartition

from include.pipeline import settings
from tests.harness.live_airflow import live_stack
from tests.harness.live_runs import (
    BOUNDED,
    DAGS,
    STAGES,
    STOP_WITHIN,
    STREAM,
    assert_every_order_once_and_the_metrics_exact,
    drain,
    group_committed,
    open_transactions,
    pause_stream,
    stream_run,
    wait_for_stages,
)
from tests.harness.pipeline import Pipeline

pytestmark = pytest.mark.integration

INSTANCES = ("generate", "process[0]", "analyze[0]", "sink")  # a stream run's, with one worker
# process had read 30,000-55,000 of them when the stop reached it (measured): it stops mid-run.
BOUNDED_ORDERS = 200_000
MARKED_FAILED_WITHIN = 15  # seconds: a run marked failed, none of its stage tasks runs any more
OUTAGE = 30  # seconds the broker is stopped in the middle of a stream run
# The API server frozen, a task's supervisor gives up after its failed heartbeats, then stops the
# task. After one here, not the default 3 (about 2.5 minutes in all,
# docs/operations/stopping-and-recovering.md): the same rule in a third of the time. Each
# heartbeat keeps its 5 retries with backoff: a busy API server's first answers take longer than a
# request's 5 s timeout.
FAILED_HEARTBEATS = "1"
HEARTBEATS_LOST_WITHIN = 120
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


def orders_end(pipeline: Pipeline) -> int:
    """The read_committed end offsets of orders, summed: where process stands once it is done."""
    consumer = KafkaConsumer(**pipeline.client, isolation_level="read_committed")
    try:
        tps = [TopicPartition(settings.ORDERS, p) for p in consumer.partitions_for_topic(settings.ORDERS)]
        return sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close()


def restart(airflow) -> None:
    airflow.start()
    airflow.wait_until_ready(DAGS)


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
