"""ConsumerLagTrigger alone against a real broker: its async run() driven by the test, the broker
written to and read back with kafka-python, the connection from AIRFLOW_CONN_KAFKA_DEFAULT."""

from __future__ import annotations

import asyncio
import json
import logging
import re

import pytest
from airflow._shared.logging.structlog import PER_LOGGER_LEVELS
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata

from kafka_stages.triggers import ConsumerLagTrigger
from tests.harness.pipeline import fresh_pipeline

pytestmark = pytest.mark.integration

QUIET = 3.0  # seconds in which a trigger that should not fire must stay silent


@pytest.fixture(scope="module")
def broker(tmp_path_factory, shared_broker):
    """The shared broker, emptied, for the module; each test has topics and a group of its own."""
    pipeline = fresh_pipeline(tmp_path_factory.mktemp("lag-trigger"), shared_broker)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_KAFKA_DEFAULT", json.dumps(
            {"conn_type": "kafka", "extra": {"bootstrap.servers": pipeline.bootstrap}}
        ))
        yield pipeline


@pytest.fixture
def topic(broker, request):
    """A fresh 3-partition topic named after the test, and the group watched on it."""
    name = request.node.name.removeprefix("test_")[:40]
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic(name, 3, 1)])
    admin.close()
    return name, f"group-{name}"


def produce(pipeline, topic: str, n: int, first: int = 0) -> None:
    pipeline.produce(topic, [(f"k{i}".encode(), b"{}") for i in range(first, first + n)])


class Events:
    """A trigger's events as the triggerer takes them: one pending anext() at a time, never
    cancelled while the test waits (that would end the trigger)."""

    def __init__(self, trigger: ConsumerLagTrigger) -> None:
        self.run, self.pending = trigger.run(), None

    async def next(self, timeout: float):
        """The next event's payload, or None if the trigger stays silent for ``timeout`` seconds."""
        self.pending = self.pending or asyncio.ensure_future(anext(self.run))
        done, _ = await asyncio.wait([self.pending], timeout=timeout)
        if not done:
            return None
        task, self.pending = self.pending, None
        return task.result().payload

    async def close(self) -> None:
        if self.pending:
            self.pending.cancel()
            await asyncio.wait([self.pending])
        await self.run.aclose()


def groups_on_broker(pipeline) -> set[str]:
    admin = KafkaAdminClient(bootstrap_servers=pipeline.bootstrap)
    try:
        return {group["group_id"] for group in admin.list_groups()}
    finally:
        admin.close()


def commit_to_end(pipeline, topic: str, group: str) -> None:
    """What a stage's run does to its group's offsets when it has read everything."""
    consumer = KafkaConsumer(bootstrap_servers=pipeline.bootstrap, group_id=group, enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.commit(
        {tp: OffsetAndMetadata(end, None, -1) for tp, end in consumer.end_offsets(partitions).items()}
    )
    consumer.close()


def test_fires_at_min_records_once_per_backlog_and_moves_no_offsets(broker, topic):
    name, group = topic

    async def scenario():
        events = Events(ConsumerLagTrigger({name: group}, min_records=100, poll_interval=0.2))
        produce(broker, name, 60)
        assert await events.next(QUIET) is None  # 60 < 100
        produce(broker, name, 40, first=60)
        assert await events.next(QUIET) == {"records": 100, "topics": {name: 100}, "reason": "min_records"}
        produce(broker, name, 99, first=100)
        assert await events.next(QUIET) is None  # the first 100 were signalled, 99 are new
        assert group not in groups_on_broker(broker)  # it only looked: no group, no offsets
        commit_to_end(broker, name, group)  # the run it started works through everything
        produce(broker, name, 100, first=199)
        assert await events.next(QUIET) == {"records": 100, "topics": {name: 100}, "reason": "min_records"}
        await events.close()

    asyncio.run(scenario())


def test_fewer_records_fire_after_max_wait_and_a_sensor_trigger_gives_up(broker, topic):
    name, group = topic

    async def scenario():
        events = Events(
            ConsumerLagTrigger({name: group}, min_records=10_000, max_wait_seconds=2, poll_interval=0.2)
        )
        assert await events.next(1) is None
        produce(broker, name, 3)
        assert await events.next(1.5) is None  # not yet 2 s of lag
        assert await events.next(QUIET) == {"records": 3, "topics": {name: 3}, "reason": "max_wait"}
        await events.close()
        commit_to_end(broker, name, group)
        sensor = ConsumerLagTrigger({name: group}, give_up_after_seconds=1.5, poll_interval=0.2)
        assert await Events(sensor).next(QUIET) == {"records": 0, "topics": {}, "reason": "gave_up"}

    asyncio.run(scenario())


def test_a_broker_restart_while_it_waits_is_retried_logged_once_and_survived(broker, topic, capfd):
    name, group = topic

    async def scenario():
        events = Events(ConsumerLagTrigger({name: group}, min_records=10, poll_interval=0.2))
        assert await events.next(2) is None
        capfd.readouterr()  # what it logged so far
        await asyncio.to_thread(broker.broker, "down")
        assert await events.next(15) is None  # several failed looks, backing off
        await asyncio.to_thread(broker.broker, "up")
        await asyncio.to_thread(produce, broker, name, 10)
        assert await events.next(90) == {"records": 10, "topics": {name: 10}, "reason": "min_records"}
        await events.close()

    asyncio.run(scenario())
    lines = [line for line in capfd.readouterr().out.splitlines() if "kafka_stages.triggers" in line]
    assert sum("cannot read the offsets from Kafka" in line for line in lines) == 1, lines
    assert sum("Kafka answers again" in line for line in lines) == 1, lines


def test_a_look_is_logged_at_debug_when_what_it_sees_changes(broker, topic, capfd, monkeypatch):
    name, group = topic
    monkeypatch.setitem(PER_LOGGER_LEVELS, "kafka_stages.triggers", logging.DEBUG)

    async def scenario():
        events = Events(ConsumerLagTrigger({name: group}, min_records=100, poll_interval=0.2))
        assert await events.next(1) is None  # several looks at the empty topic: one logged
        await asyncio.to_thread(produce, broker, name, 5)
        assert await events.next(1) is None
        await asyncio.to_thread(commit_to_end, broker, name, group)
        assert await events.next(1) is None
        await events.close()

    asyncio.run(scenario())
    looks = [line.split("looked: ")[1].split(" [")[0].rstrip() for line in capfd.readouterr().out.splitlines()
             if "looked: " in line]
    shape = re.compile(rf"{name} ends at (\d+), its group {group} at (\d+) \((\d+) behind\)")
    seen = [tuple(map(int, shape.fullmatch(look).groups())) for look in looks]
    # The 5 records land on 3 partitions one by one, so a look may see some of them: it is logged too.
    assert seen[0] == (0, 0, 0) and (5, 0, 5) in seen and seen[-1] == (5, 5, 0), looks
    assert all(a != b for a, b in zip(seen, seen[1:])), looks  # a look is logged only when it changes
    assert all(end - position == behind for end, position, behind in seen), looks
    assert seen == sorted(seen, key=lambda look: (look[0], look[1])), looks  # never back
