"""Crash faults in the middle of a stage, each ending exactly as the data contract says a clean run
of the same input ends (the oracle, tests/oracle.py), with every order accounted for:

- test_kill_9_mid_batch_then_retry: `process` is killed with SIGKILL while a batch's transaction
  is open (some batches committed, not all), and run again (Airflow's retry); the same for
  `analyze`; then `sink`.
- test_kill_9_of_one_analyze_instance_mid_batch_then_its_retry: the same for instance 1 of 2 of
  `analyze` (`workers` 2): its retry ends exact, the other instance's partitions untouched until
  it runs.
- test_sigterm_mid_batch_ends_the_stage_cleanly_then_the_rest_follows: `process` gets SIGTERM (as
  from Airflow) while a batch's transaction is open: it commits that batch, says so, exits
  within 15 s with no transaction left open, and a second run does the rest.
- test_broker_restart_during_a_stage_then_retry: the broker stops (cleanly, keeping its data) while
  `process` has a batch's transaction open, comes back 2 s later; `process` is run again, then
  `analyze` and `sink`.

The stage killed or left without its broker runs in a process of its own without Airflow
(tests/integration/stage_process.py); the one stopped with SIGTERM is the Airflow task (`airflow
tasks test`), whose own handling of the signal is what is tested. The retries are the task, run
in the test's process (as `tasks test` runs it).

"Mid-batch" is made deterministic: the stage's process group is frozen (SIGSTOP) every few tens of
milliseconds and looked at from outside with kafka-python; the fault is injected only in a frozen
state where some input offsets are committed, not all, and the stage's open transaction has records
on the broker. (Polling every 0.1 s would alias with analyze's ~0.1 s batches and miss them.)
"""

import json
import os
import signal
import subprocess
import time
from collections import Counter
from contextlib import closing
from datetime import datetime, timezone

import psutil
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import RetriableError

from include.pipeline import generator
from tests.integration.expected import assert_as_the_oracle_says, oracle_of
from tests.oracle import Order, parse

ORDERS = 40_000
START, END = datetime(2026, 1, 5, 9, tzinfo=timezone.utc), datetime(2026, 1, 5, 10, tzinfo=timezone.utc)
STAGES = {  # stage -> (input topic, output topics)
    "process": ("orders", ("processed-orders", "orders-dlq")),
    "analyze": ("processed-orders", ("product-metrics", "analyze-state")),
}


class Watch:
    """kafka-python's view of a stage from outside: its group's committed offsets, and whether a
    transaction is open on its outputs (the last stable offset behind the high watermark)."""

    def __init__(self, pipeline):
        self.admin = KafkaAdminClient(bootstrap_servers=pipeline.bootstrap)
        self.stable = KafkaConsumer(bootstrap_servers=pipeline.bootstrap, isolation_level="read_committed")
        self.written = KafkaConsumer(bootstrap_servers=pipeline.bootstrap, isolation_level="read_uncommitted")

    def committed(self, stage: str, partitions: list[int] | None = None) -> int:
        group, topic = f"kafka-pipeline-{stage}", STAGES[stage][0]
        for _ in range(300):
            try:
                offsets = self.admin.list_group_offsets(group).get(group, {})
                break
            except RetriableError:  # the offsets topic not created or still loading on a fresh broker
                time.sleep(0.1)
        else:
            pytest.fail(f"no committed offsets of {group} within 30s")
        return sum(
            meta.offset for tp, meta in offsets.items()
            if tp.topic == topic and meta.offset > 0 and (partitions is None or tp.partition in partitions)
        )

    def open_transaction(self, stage: str) -> dict:
        """{(topic, partition): (last stable offset, high watermark)} where they differ."""
        tps = [TopicPartition(t, p) for t in STAGES[stage][1] for p in self.stable.partitions_for_topic(t)]
        stable, written = self.stable.end_offsets(tps), self.written.end_offsets(tps)
        return {
            (tp.topic, tp.partition): (stable[tp], written[tp]) for tp in tps if stable[tp] != written[tp]
        }

    def close(self):
        self.admin.close()
        self.stable.close()
        self.written.close()


def write_input(pipeline, seed: int, orders: int = ORDERS) -> list[tuple[bytes, bytes | None]]:
    pipeline.task("create_topics")
    records = list(generator.orders(orders, START, END, invalid_ratio=0.05, seed=seed))
    pipeline.produce_many("orders", records)
    return records


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
) -> int:
    """Poll the running stage, freezing its process group (SIGSTOP) to look each time. Returns,
    with it still frozen, its committed input total once that is strictly between 0 and ``end``
    and its current batch's transaction has records on the broker. Fails rather than pass
    vacuously if the stage commits everything or ends first."""
    with closing(Watch(pipeline)) as watch:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            assert proc.poll() is None, (
                f"{stage} ended (exit code {proc.returncode}) before it was caught mid-batch: "
                "give it more input"
            )
            os.killpg(proc.pid, signal.SIGSTOP)
            done = watch.committed(stage, partitions)
            assert done < end, (
                f"{stage} committed all {end} input offsets before it was caught mid-batch: "
                "give it more input"
            )
            if done > 0 and watch.open_transaction(stage):
                # Let what the broker has in flight settle: a commit the stage had already asked
                # for (markers still being written) would complete now; a frozen client's open
                # transaction cannot.
                time.sleep(0.5)
                if watch.committed(stage, partitions) == done and watch.open_transaction(stage):
                    return done
            os.killpg(proc.pid, signal.SIGCONT)
            time.sleep(0.02)
    pytest.fail(f"{stage} was not caught mid-batch within {deadline_s}s")


def order_id(value: bytes | None) -> str | None:
    try:
        doc = json.loads(value)
    except (TypeError, ValueError):
        return None
    return doc.get("order_id") if isinstance(doc, dict) else None


def assert_like_a_clean_run(pipeline, records):
    """Everything as the oracle says a clean run of the input ends (the generated ids are unique
    and in event order, so the order the stages read them in changes nothing), and every order in
    exactly one place: processed-orders (valid, once; by key and order id) or orders-dlq (by its
    source position)."""
    expected = oracle_of([value for _, value in records])
    valid = {(key, order.order_id) for key, value in records if isinstance(order := parse(value), Order)}
    assert len(expected.valid) == len(valid) == len(expected.counted)

    source = pipeline.read("orders")
    assert Counter((r.key, r.value) for r in source) == Counter(records), "orders is not the input"
    processed = pipeline.read("processed-orders")
    processed_ids = Counter((r.key, order_id(r.value)) for r in processed)
    assert len(processed) == len(valid), f"{len(processed)} processed records for {len(valid)} valid orders"
    assert set(processed_ids) == valid
    assert max(processed_ids.values()) == 1, "a valid order processed twice"

    dead = pipeline.read("orders-dlq")
    assert {r.headers["source.topic"] for r in dead} == {b"orders"}
    by_position = {(r.partition, r.offset): r for r in source}
    dead_positions = Counter(
        (int(r.headers["source.partition"]), int(r.headers["source.offset"])) for r in dead
    )
    assert max(dead_positions.values()) == 1, "an order dead-lettered twice"
    for r in dead:
        origin = by_position[(int(r.headers["source.partition"]), int(r.headers["source.offset"]))]
        assert (origin.key, origin.value) == (r.key, r.value)
    went = {
        p: ((r.key, order_id(r.value)) in processed_ids, p in dead_positions) for p, r in by_position.items()
    }
    nowhere = [p for p, ways in went.items() if ways == (False, False)]
    both = [p for p, ways in went.items() if ways == (True, True)]
    assert (nowhere, both) == ([], []), (
        f"{len(nowhere)} orders lost, {len(both)} both processed and dead-lettered"
    )
    metrics = assert_as_the_oracle_says(pipeline, expected)
    assert sum(m["order_count"] for m in metrics) == len(valid)


def test_kill_9_mid_batch_then_retry(pipeline):
    records = write_input(pipeline, seed=20260105)
    for stage in ("process", "analyze"):
        end = end_of(pipeline, stage)
        with pipeline.running(stage) as proc:
            done = freeze_mid_batch(pipeline, proc, stage, end)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        time.sleep(1)
        with closing(Watch(pipeline)) as watch:
            # Really killed mid-way: the open batch never committed, and its transaction is left
            # open (a zombie) for the retry's init_transactions to abort.
            assert 0 < watch.committed(stage) == done < end
            assert watch.open_transaction(stage)
        pipeline.task(stage)  # Airflow's retry
        with closing(Watch(pipeline)) as watch:
            assert watch.committed(stage) == end
            assert not watch.open_transaction(stage)
    pipeline.task("sink")
    assert_like_a_clean_run(pipeline, records)


def test_kill_9_of_one_analyze_instance_mid_batch_then_its_retry(pipeline):
    # An instance reads half the orders: enough batches that it is caught in one (the batch path
    # counted 19,000 before the first look).
    records = write_input(pipeline, seed=20260108, orders=3 * ORDERS)
    pipeline.task("process")
    mine, theirs = [1, 3, 5], [0, 2, 4]  # instance 1 of 2, round robin over the 6 partitions
    end = end_of(pipeline, "analyze", mine)
    with pipeline.running("analyze", worker="1/2") as proc:
        done = freeze_mid_batch(pipeline, proc, "analyze", end, partitions=mine)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    time.sleep(1)
    with closing(Watch(pipeline)) as watch:
        assert 0 < watch.committed("analyze", mine) == done < end
        assert watch.committed("analyze", theirs) == 0
        assert watch.open_transaction("analyze")
    pipeline.task("analyze", params={"workers": 2}, map_index=1)  # Airflow's retry of that instance
    with closing(Watch(pipeline)) as watch:
        assert (watch.committed("analyze", mine), watch.committed("analyze", theirs)) == (end, 0)
        assert not watch.open_transaction("analyze")
    pipeline.task("analyze", params={"workers": 2}, map_index=0)
    with closing(Watch(pipeline)) as watch:
        assert watch.committed("analyze") == end_of(pipeline, "analyze")
    pipeline.task("sink")
    assert_like_a_clean_run(pipeline, records)


def test_sigterm_mid_batch_ends_the_stage_cleanly_then_the_rest_follows(pipeline, tmp_path):
    records = write_input(pipeline, seed=20260107)
    end = end_of(pipeline, "process")
    log = tmp_path / "process.log"
    with pipeline.running("process", log=log, airflow=True) as proc:
        done = freeze_mid_batch(pipeline, proc, "process", end)
        # To the task's own process (as Airflow's supervisor sends it), not the wrapper's pipe.
        task = next(p for p in psutil.Process(proc.pid).children(recursive=True) if "tasks" in p.cmdline())
        task.send_signal(signal.SIGTERM)
        os.killpg(proc.pid, signal.SIGCONT)
        proc.wait(timeout=15)
    with closing(Watch(pipeline)) as watch:
        assert done < watch.committed("process") <= end  # the batch in flight committed
        assert not watch.open_transaction("process")
    output = log.read_text()
    assert "stopping: SIGTERM received; the batch in flight commits or aborts, then the stage ends" in output
    assert "process stopped (SIGTERM received): every transaction it committed stays" in output
    assert "scripts/airflow: task process did not succeed" in output
    pipeline.task("process")  # Airflow's retry
    pipeline.task("analyze")
    pipeline.task("sink")
    assert_like_a_clean_run(pipeline, records)


def test_broker_restart_during_a_stage_then_retry(pipeline):
    records = write_input(pipeline, seed=20260106)
    end = end_of(pipeline, "process")
    with pipeline.running("process") as proc:
        assert 0 < freeze_mid_batch(pipeline, proc, "process", end) < end
        pipeline.broker("down")  # a clean stop, data kept, while the batch's transaction is open
        os.killpg(proc.pid, signal.SIGCONT)  # the task carries on against a broker that is gone
        time.sleep(2)
        pipeline.broker("up")
        try:
            proc.wait(timeout=180)  # it may fail or succeed, but it must end for Airflow to retry it
            hung = None
        except subprocess.TimeoutExpired:  # what follows is checked anyway (the hung attempt is killed)
            hung = "process did not end within 180s of the broker coming back (Airflow would never retry it)"
    pipeline.task("process")  # Airflow's retry (a no-op after a successful attempt)
    with closing(Watch(pipeline)) as watch:
        assert watch.committed("process") == end
    pipeline.task("analyze")
    pipeline.task("sink")
    assert_like_a_clean_run(pipeline, records)
    assert hung is None, hung
