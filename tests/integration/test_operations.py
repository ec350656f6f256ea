"""Operations on stream runs, through a real Airflow (`scripts/airflow standalone`, driven through
the REST API) and a real broker: standalone stopped with Ctrl-C in the middle of a stream run,
started again, a stage's supervisor killed, a run marked failed, the broker stopped for a while,
the API server frozen so that no heartbeat is answered. Afterwards no process of it is left, no
transaction is left open, and the next runs end with the metrics of every counted order, each
order processed or dead-lettered once. (Bounded runs: test_operations_bounded.py.)

One Airflow and one broker for the module (``live``, tests/integration/conftest.py); each test
leaves Airflow running, so each also runs alone.
"""

from __future__ import annotations

import signal
import time

import psutil
import pytest

from tests.harness.live_runs import (
    BOUNDED,
    STAGES,
    STOP_WITHIN,
    STREAM,
    assert_every_order_once_and_the_metrics_exact,
    drain,
    open_transactions,
    pause_stream,
    restart,
    stream_run,
    wait_for_stages,
)

pytestmark = pytest.mark.integration

INSTANCES = ("generate", "process[0]", "analyze[0]", "sink")  # a stream run's, with one worker
MARKED_FAILED_WITHIN = 15  # seconds: a run marked failed, none of its stage tasks runs any more
OUTAGE = 30  # seconds the broker is stopped in the middle of a stream run
# The API server frozen, a task's supervisor gives up after its failed heartbeats (one here:
# tests/integration/conftest.py's ``live``), then stops the task.
HEARTBEATS_LOST_WITHIN = 120
WENT = "does not answer"  # the stage's one line when Kafka goes (kafka_io.Outage) ...
CAME_BACK = "Kafka answers again"  # ... and when it comes back


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
