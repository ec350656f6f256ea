"""Scale-out under change, on the same topics and store, one phase after the other (docs/concepts/
workers.md): a run at 2 workers whose `process` instance 1 was killed with -9 mid-batch and
retried; then a run at 3 workers; then at 1; then two
runs of different worker counts (2 and 3) side by side, each instance a process of its own, each
fenced instance retried. After each phase the store equals the oracle (tests/oracle.py) to the
cent, every order is processed or dead-lettered exactly once, and the duplicates and late orders
are exactly the copies and late orders each phase's input holds."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, nullcontext
from datetime import datetime, timedelta, timezone

from include.pipeline.domain import generator
from tests.harness.expected import oracle_of
from tests.harness.factories import order_value
from tests.harness.faults import (
    Watch,
    assert_dead_lettered_as_planted,
    assert_every_order_once,
    end_of,
    kill_one_instance_mid_batch,
)
from tests.oracle import Oracle

FIRST_HOUR = datetime(2026, 1, 5, 9, tzinfo=timezone.utc)
Records = list[tuple[bytes, bytes | None]]


def phase_input(phase: int, orders: int, first: Records) -> tuple[Records, Counter]:
    """Orders of the phase's hour (FIRST_HOUR + phase: later than every earlier phase's, none late
    against another), then, after the first phase, copies of 20 of the first phase's valid orders
    under other keys and 6 orders of 07:00 (late on any partition: each has counted orders of
    09:00 on). Their verdicts do not depend on the order any split reads them in. Returns the
    records and the duplicate and late dead letters they must become."""
    start = FIRST_HOUR + timedelta(hours=phase)
    hour = (start, start + timedelta(hours=1))
    records = list(generator.orders(orders, *hour, invalid_ratio=0.05, seed=phase))
    planted: Counter = Counter()
    if phase:
        valid = [(key, value) for key, value in first if not key.startswith(b"user-")]
        copies = valid[phase * 97::997][:20]
        records += [(f"copy-{phase}-{n}".encode(), value) for n, (_, value) in enumerate(copies)]
        planted.update(("duplicate", key.decode()) for key, _ in copies)  # a valid order's key is its id
        for n in range(6):
            order_id = f"late-{phase}-{n}"
            records.append((order_id.encode(), order_value(order_id, f"prod-{n % 5 + 1}", "4.20",
                                                           "2026-01-05T07:00:00Z")))
            planted[("late", order_id)] += 1
    return records, planted


def check(pipeline, expected: Oracle, planted: Counter) -> None:
    assert_dead_lettered_as_planted(pipeline, planted)
    assert_every_order_once(pipeline, expected)


def run_split(pipeline, workers: int, logs, retrying: threading.Lock) -> tuple[dict[str, int], float, float]:
    """A bounded run of the stages as ``workers`` instances each, every instance a process of its
    own (tests/harness/stage_process.py), started together; the instances that fail (fenced by
    the other run's) are retried, as Airflow would, until they succeed. The retries take turns
    with the other run's (``retrying``), as Airflow's retry delay spaces them out: two runs
    retrying at once fence each other's retries over and over. Returns the attempts per stage, and
    when its process stage started and ended."""
    attempts: dict[str, int] = {}
    span = [0.0, 0.0]
    for stage in ("process", "analyze", "sink"):
        pending = [0] if stage == "sink" else list(range(workers))
        started = time.monotonic()
        for attempt in range(1, 7):
            with retrying if attempt > 1 else nullcontext():
                procs = {
                    index: pipeline.start_stage(
                        stage, logs / f"{stage}-{index}of{workers}-try{attempt}.log",
                        None if stage == "sink" else f"{index}/{workers}",
                    )
                    for index in pending
                }
                pending = [index for index, proc in procs.items() if proc.wait(timeout=300) != 0]
            if not pending:
                break
        assert not pending, f"{stage} at {workers} workers: instances {pending} failed 6 times (see {logs})"
        attempts[stage] = attempt
        if stage == "process":
            span = [started, time.monotonic()]
    return attempts, *span


def test_two_workers_one_killed_then_three_then_one_then_two_and_three_side_by_side(pipeline, tmp_path):
    pipeline.task("create_topics")
    first, planted = phase_input(0, 60_000, [])
    expected = oracle_of([value for _, value in first])  # fed phase after phase: its state carries on
    pipeline.produce_many("orders", first)

    # 2 workers: instance 1 of process (partitions 1, 3, 5) killed with -9 mid-batch.
    mine = [1, 3, 5]
    end = kill_one_instance_mid_batch(pipeline, "process", mine, [0, 2, 4])
    # Airflow's retry of the instance first: until it fences the zombie, the zombie's open
    # transaction holds its offsets for the group, and the run's wait_for_orders, which reads
    # them, waits for the broker to abort it (60 s, then the sensor's retry).
    pipeline.task("process", "2026-01-05T10:00:00+00:00", params={"workers": 2}, map_index=1)
    with closing(Watch(pipeline)) as watch:
        assert watch.committed("process", mine) == end
        assert not watch.open_transaction("process")
    assert pipeline.dag_test("2026-01-05T10:00:00+00:00", orders=0, workers=2).ok
    assert pipeline.manifest()["reconciled"] is True
    check(pipeline, expected, planted)

    # Then 3 workers, then 1, each a whole run over a new hour's input.
    for phase, workers in ((1, 3), (2, 1)):
        records, dead = phase_input(phase, 3000, first)
        pipeline.produce_many("orders", records)
        expected.run(value for _, value in records)
        planted += dead
        hour = (FIRST_HOUR + timedelta(hours=phase + 1)).isoformat()
        assert pipeline.dag_test(hour, orders=0, workers=workers).ok
        assert pipeline.manifest()["reconciled"] is True
        check(pipeline, expected, planted)

    # Then a run at 2 workers and one at 3 side by side: every instance shares a partition with
    # instances of the other split; it registers its own id, then fences theirs, then reads
    # (stages.transform.TransformLoop). Registering theirs first, both splits processed the same offsets.
    records, dead = phase_input(3, 5000, first)
    pipeline.produce_many("orders", records)
    expected.run(value for _, value in records)
    planted += dead
    logs = tmp_path / "side-by-side"
    logs.mkdir()
    with ThreadPoolExecutor(2) as pool:
        retrying = threading.Lock()
        two, three = pool.map(lambda workers: run_split(pipeline, workers, logs, retrying), (2, 3))
    assert two[1] < three[2] and three[1] < two[2], "the two runs' process stages did not overlap"
    with closing(Watch(pipeline)) as watch:
        for stage in ("process", "analyze"):
            assert watch.committed(stage) == end_of(pipeline, stage)
            assert not watch.open_transaction(stage)
    check(pipeline, expected, planted)
