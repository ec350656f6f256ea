"""A three-node cluster (scripts/kafka/broker with KAFKA_NODES=3: KRaft, three controllers):
the pipeline's topics replicated 3 times with min.insync.replicas 2, and a broker killed with
SIGKILL while `process` has a batch of a 200,000-order input open. The run completes (a retry
where it must), the metrics equal a clean run's to the cent with every order in one place, and
the broker comes back and catches up."""

import os
import signal
import time
from contextlib import closing
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from include.pipeline import settings
from tests.harness.expected import oracle_of
from tests.harness.faults import Watch, assert_every_order_once, end_of, freeze_mid_batch, write_input
from tests.harness.pipeline import pipeline_on

ORDERS = 200_000


@pytest.fixture
def cluster(tmp_path):
    with pipeline_on(tmp_path, nodes=3) as pipeline:
        yield pipeline


def node_pid(pipeline, node: int) -> int:
    return int((Path(pipeline.env["KAFKA_DATA_DIR"]) / f"node-{node}" / "broker.pid").read_text())


def under_replicated(admin: AdminClient) -> list[str]:
    topics = admin.list_topics(timeout=30).topics
    return [
        f"{name}[{p}] isr={sorted(partition.isrs)}"
        for name in settings.TOPIC_CONFIGS for p, partition in topics[name].partitions.items()
        if len(partition.isrs) < 3
    ]


def test_a_broker_killed_mid_batch_the_run_ends_exact_and_the_broker_catches_up(cluster):
    records = write_input(cluster, seed=20261126, orders=ORDERS)
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    topics = admin.list_topics(timeout=30).topics
    assert {
        name: {len(p.replicas) for p in topics[name].partitions.values()} for name in settings.TOPIC_CONFIGS
    } == {name: {3} for name in settings.TOPIC_CONFIGS}
    configs = admin.describe_configs([ConfigResource("topic", name) for name in settings.TOPIC_CONFIGS])
    assert {r.name: f.result()["min.insync.replicas"].value for r, f in configs.items()} == dict.fromkeys(
        settings.TOPIC_CONFIGS, "2"
    )

    end = end_of(cluster, "process")
    # The node that coordinates the stage's consumer group (its offsets' partition leader).
    coordinator = (
        admin.describe_consumer_groups(["kafka-pipeline-process"])["kafka-pipeline-process"].result()
    )
    victim = coordinator.coordinator.id
    with cluster.running("process") as proc:
        done = freeze_mid_batch(cluster, proc, "process", end)
        assert 0 < done < end
        os.kill(node_pid(cluster, victim), signal.SIGKILL)
        os.killpg(proc.pid, signal.SIGCONT)
        proc.wait(timeout=300)
    if proc.returncode != 0:
        cluster.task("process")  # Airflow's retry
    with closing(Watch(cluster)) as watch:
        assert watch.committed("process") == end
    cluster.task("analyze")
    cluster.task("sink")
    assert_every_order_once(cluster, oracle_of([value for _, value in records]))

    cluster.broker("up")  # starts the killed node again
    deadline = time.monotonic() + 120
    while (lagging := under_replicated(admin)) and time.monotonic() < deadline:
        time.sleep(1)
    assert lagging == [], f"node {victim} did not catch up within 120s"
