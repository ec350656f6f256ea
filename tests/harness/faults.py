"""What the fault tests share: their input (``write_input``), a stage looked at from outside with
kafka-python (``Watch``), a stage frozen in the middle of a batch (``freeze_mid_batch``), and the
input a killed stage's restart must judge by the state it restored (``against_the_restored_state``):
copies of orders counted before the kill, and orders late against each partition's restored
stream time."""

from __future__ import annotations

import functools
import os
import signal
import time
from collections import Counter
from contextlib import closing
from datetime import datetime, timezone

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import RetriableError, TransactionalIdNotFoundError

from include.pipeline.domain import generator
from tests.harness.expected import GRACE_SECONDS, PARTITIONS, _differences, assert_as_the_oracle_says
from tests.harness.factories import order_value
from tests.oracle import US, WINDOW_US, Order, dead_letters_of, order_id_of, parse, partition_of

ORDERS = 40_000  # write_input's
START, END = datetime(2026, 1, 5, 9, tzinfo=timezone.utc), datetime(2026, 1, 5, 10, tzinfo=timezone.utc)


def write_input(
    pipeline, seed: int, orders: int = ORDERS, newest_first: bool = False,
) -> list[tuple[bytes, bytes | None]]:
    """Generated orders of 09:00-10:00 (unique ids, none late against another), to `orders`.
    ``newest_first``: in reverse event order, so that what a stage killed mid-way has counted is
    the newest of each partition, and an order late against that restored stream time is not late
    against anything its retry reads first."""
    pipeline.task("create_topics")
    records = list(generator.orders(orders, START, END, invalid_ratio=0.05, seed=seed))
    records = records[::-1] if newest_first else records
    pipeline.produce_many("orders", records)
    return records


STAGES = {  # stage -> (input topic, output topics)
    "process": ("orders", ("processed-orders", "orders-dlq")),
    "analyze": ("processed-orders", ("product-metrics", "analyze-state")),
    "sink": ("product-metrics", ()),  # its outputs are in the store
}


class Watch:
    """kafka-python's view of a stage from outside: its group's committed offsets, and whether a
    transaction is open on its outputs (the last stable offset behind the high watermark)."""

    def __init__(self, pipeline):
        self.admin = KafkaAdminClient(bootstrap_servers=pipeline.bootstrap)
        self.stable = KafkaConsumer(bootstrap_servers=pipeline.bootstrap, isolation_level="read_committed")
        self.written = KafkaConsumer(bootstrap_servers=pipeline.bootstrap, isolation_level="read_uncommitted")

    def offsets(self, stage: str) -> dict[int, int]:
        """The stage's group's committed offsets of its input, by partition (0 where none)."""
        group, topic = f"kafka-pipeline-{stage}", STAGES[stage][0]
        for _ in range(300):
            try:
                offsets = self.admin.list_group_offsets(group).get(group, {})
                break
            except RetriableError:  # the offsets topic not created or still loading on a fresh broker
                time.sleep(0.1)
        else:
            pytest.fail(f"no committed offsets of {group} within 30s")
        return {tp.partition: max(meta.offset, 0) for tp, meta in offsets.items() if tp.topic == topic}

    def committed(self, stage: str, partitions: list[int] | None = None) -> int:
        return sum(o for p, o in self.offsets(stage).items() if partitions is None or p in partitions)

    def open_transaction(self, stage: str) -> dict:
        """{(topic, partition): (last stable offset, high watermark)} where they differ."""
        tps = [TopicPartition(t, p) for t in STAGES[stage][1] for p in self.stable.partitions_for_topic(t)]
        stable, written = self.stable.end_offsets(tps), self.written.end_offsets(tps)
        return {
            (tp.topic, tp.partition): (stable[tp], written[tp]) for tp in tps if stable[tp] != written[tp]
        }

    def transaction(self, transactional_id: str) -> tuple[str, int, int]:
        """(state, producer epoch, start time) of the id's transaction at its coordinator."""
        try:
            txn = self.admin.describe_transactions([transactional_id])[transactional_id]
        except TransactionalIdNotFoundError:  # the stage has not registered it yet
            return "None", -1, -1
        return str(txn.state.value), txn.producer_epoch, txn.transaction_start_time_ms

    def close(self):
        self.admin.close()
        self.stable.close()
        self.written.close()


def end_of(pipeline, stage: str, partitions: list[int] | None = None) -> int:
    """Where the stage's committed offsets stand once it has read everything (of ``partitions``):
    the end of each partition of its input as read_committed readers see it (past the transaction
    markers that follow the last record, so that a stage with nothing new shows no lag)."""
    with closing(Watch(pipeline)) as watch:
        topic = STAGES[stage][0]
        tps = [TopicPartition(topic, p) for p in partitions or watch.stable.partitions_for_topic(topic)]
        return sum(watch.stable.end_offsets(tps).values())


def freeze_mid_batch(
    pipeline, proc, stage: str, end: int, deadline_s: float = 180, partitions: list[int] | None = None,
    worker: str | None = None,
) -> int:
    """Poll the running stage, freezing its process group (SIGSTOP) to look each time. Returns,
    with it still frozen, its committed input total once that is strictly between 0 and ``end``
    and its current batch's transaction has records on the broker. Fails rather than pass
    vacuously if the stage commits everything or ends first. ``worker`` "i/n": the instance."""
    txn_id = f"kafka-pipeline-{stage}" + (f"-{worker.replace('/', 'of')}" if worker else "")
    with closing(Watch(pipeline)) as watch:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            assert proc.poll() is None, (
                f"{stage} ended (exit code {proc.returncode}) before it was caught mid-batch: "
                "give it more input"
            )
            os.killpg(proc.pid, signal.SIGSTOP)
            before = watch.transaction(txn_id)
            done = watch.committed(stage, partitions)
            assert done < end, (
                f"{stage} committed all {end} input offsets before it was caught mid-batch: "
                "give it more input"
            )
            # The same transaction Ongoing at the coordinator before and after the look: the
            # frozen client had not asked to commit it (a commit asked for before the freeze
            # would show PrepareCommit, and complete without the client), so nothing commits now.
            if done > 0 and watch.open_transaction(stage) and before[0] == "Ongoing":
                if watch.transaction(txn_id) == before and watch.committed(stage, partitions) == done:
                    return done
            os.killpg(proc.pid, signal.SIGCONT)
            time.sleep(0.02)
    pytest.fail(f"{stage} was not caught mid-batch within {deadline_s}s")


def kill_one_instance_mid_batch(pipeline, stage: str, mine: list[int], theirs: list[int]) -> int:
    """Instance 1 of 2 of ``stage`` (on ``mine``) killed with -9 mid-batch: what it committed is
    part of its share, nothing of ``theirs``, and its open transaction is left to its retry.
    Returns the end of its share's input."""
    end = end_of(pipeline, stage, mine)
    with pipeline.running(stage, worker="1/2") as proc:
        done = freeze_mid_batch(pipeline, proc, stage, end, partitions=mine, worker="1/2")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with closing(Watch(pipeline)) as watch:
        assert 0 < watch.committed(stage, mine) == done < end
        assert watch.committed(stage, theirs) == 0
        assert watch.open_transaction(stage)
    return end


def against_the_restored_state(
    pipeline, tag: str, counted_upto: dict[int, int] | None, copies: int = 100,
) -> tuple[list[tuple[bytes, bytes]], Counter, list[int]]:
    """Records to add to `orders` after a stage is killed, judged by analyze's state as it stood
    then: what processed-orders holds below ``counted_upto`` (analyze's committed offsets by
    partition; None: all it holds, which analyze has yet to count) and analyze did not
    dead-letter, i.e. what that state has counted.

    - ``copies`` of those orders (their `orders` values, under other keys: other partitions of
      `orders`, the same partition of processed-orders), spread over the partitions: duplicates;
    - on each partition that has counted, one order a product late by the narrowest margin against
      its stream time (the window that ended just over ``grace`` before the newest event time
      counted there).

    Returns the records, the dead letters they must become (reason, order_id), and the partitions
    where the late orders are late only against the state: the newest event time that
    processed-orders holds from ``counted_upto`` on would not make them late (a restart that lost
    the stream time counts them)."""
    processed = pipeline.read("processed-orders")
    by_analyze = {
        (int(r.headers["source.partition"]), int(r.headers["source.offset"]))
        for r in pipeline.read("orders-dlq") if r.headers["source.topic"] == b"processed-orders"
    }
    counted: dict[str, Order] = {}
    watermark: dict[int, int] = {}
    after: dict[int, int] = {}  # the newest event time on each partition from counted_upto on
    for r in processed:
        order = parse(r.value)
        if counted_upto is None or r.offset < counted_upto.get(r.partition, 0):
            if (r.partition, r.offset) not in by_analyze:
                counted.setdefault(order.order_id, order)
                watermark[r.partition] = max(order.event_us, watermark.get(r.partition, order.event_us))
        else:
            after[r.partition] = max(order.event_us, after.get(r.partition, order.event_us))
    assert counted, "nothing counted before the kill to copy"
    values = {order_id_of(r.value): r.value for r in pipeline.read("orders")}
    chosen = list(counted)[:: max(1, len(counted) // copies)][:copies]
    records = [(f"{tag}-copy-{n}".encode(), values[order_id]) for n, order_id in enumerate(chosen)]
    dead = Counter(("duplicate", order_id) for order_id in chosen)
    only_restored = []
    for partition, newest in sorted(watermark.items()):
        # Late: window end + grace strictly before the watermark; the latest such window.
        window_end = (newest - GRACE_SECONDS * US - 1) // WINDOW_US * WINDOW_US
        if partition not in after or window_end + GRACE_SECONDS * US >= after[partition]:
            only_restored.append(partition)
        for product in range(1, 6):
            order_id = _id_on(partition, f"{tag}-late-{product}")
            at = datetime.fromtimestamp((window_end - WINDOW_US) // US + 1, timezone.utc)  # a second in
            timestamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
            records.append((order_id.encode(), order_value(order_id, f"prod-{product}", "7.77", timestamp)))
            dead[("late", order_id)] += 1
    return records, dead, only_restored


def _id_on(partition: int, prefix: str) -> str:
    """An order id (``prefix``-n) that processed-orders puts on ``partition``."""
    n = 0
    while partition_of(f"{prefix}-{n}", PARTITIONS) != partition:
        n += 1
    return f"{prefix}-{n}"


@functools.lru_cache(maxsize=500_000)
def _order_id(value: bytes | None) -> str | None:
    """order_id_of, once a value: the checks after each phase of a test read the same records again."""
    return order_id_of(value)


def assert_every_order_once(pipeline, expected) -> None:
    """Everything as the oracle says (tests/oracle.py), and every record in exactly one place: each
    `orders` record processed or dead-lettered by process (by its source position), never both,
    never twice; each processed-orders record counted or dead-lettered by analyze, never twice."""
    source, processed = pipeline.read("orders"), pipeline.read("processed-orders")
    dead = pipeline.read("orders-dlq")
    by_position = {(r.partition, r.offset): r for r in source}
    rejected = Counter(
        (int(r.headers["source.partition"]), int(r.headers["source.offset"]))
        for r in dead if r.headers["source.topic"] == b"orders"
    )
    assert max(rejected.values()) == 1, "an order dead-lettered twice"
    for r in dead:
        if r.headers["source.topic"] == b"orders":
            origin = by_position[(int(r.headers["source.partition"]), int(r.headers["source.offset"]))]
            assert (origin.key, origin.value) == (r.key, r.value)
    # Processed: the records process did not reject, each once (the values' ids, with copies).
    passed = Counter(_order_id(r.value) for p, r in by_position.items() if p not in rejected)
    assert Counter(_order_id(r.value) for r in processed) == passed, "lost or processed twice"
    by_analyze = Counter(
        (int(r.headers["source.partition"]), int(r.headers["source.offset"]))
        for r in dead if r.headers["source.topic"] == b"processed-orders"
    )
    assert not by_analyze or max(by_analyze.values()) == 1, "a processed order dead-lettered twice"
    metrics = assert_as_the_oracle_says(pipeline, expected)
    assert sum(m["order_count"] for m in metrics) == len(processed) - len(by_analyze) == len(expected.counted)


def assert_dead_lettered_as_planted(pipeline, planted: Counter) -> None:
    """The duplicate and late dead letters are exactly the copies and late orders added after the
    kills (the generated input has neither)."""
    judged = Counter({k: n for k, n in dead_letters_of(pipeline.read("orders-dlq")).items()
                      if k[0] in ("duplicate", "late")})
    assert judged == planted, "duplicates and late orders not those planted: " + _differences(judged, planted)
