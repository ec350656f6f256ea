"""Operations on bounded runs, through a real Airflow (`scripts/airflow standalone`, driven through
the REST API) and a real broker: standalone stopped (SIGTERM to its group, as a service manager
stops it) or killed (SIGKILL to every process, as a crash) while `process` is mid-run, then started
again. Afterwards no process of it is left, no transaction is left open (when stopped), the run
ends with the stopped try and the one that finished, and the metrics are those of every counted
order, each order processed or dead-lettered once. (Stream runs: test_operations.py.)

One Airflow and one broker for the module (``live``, tests/integration/conftest.py).
"""

from __future__ import annotations

import signal
import time

import pytest
from kafka import KafkaConsumer, TopicPartition

from include.pipeline import settings
from tests.harness.live_runs import (
    BOUNDED,
    STOP_WITHIN,
    assert_every_order_once_and_the_metrics_exact,
    drain,
    group_committed,
    open_transactions,
    pause_stream,
    restart,
    wait_for_stages,
)
from tests.harness.pipeline import Pipeline

pytestmark = pytest.mark.integration

# process had read 30,000-55,000 of them when the stop reached it (measured): it stops mid-run.
BOUNDED_ORDERS = 120_000


def orders_end(pipeline: Pipeline) -> int:
    """The read_committed end offsets of orders, summed: where process stands once it is done."""
    consumer = KafkaConsumer(**pipeline.client, isolation_level="read_committed")
    try:
        tps = [TopicPartition(settings.ORDERS, p) for p in consumer.partitions_for_topic(settings.ORDERS)]
        return sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close()


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
