"""Continuous mode (`make stream`'s supervisor, include.pipeline.stream) against a real broker:
stage processes killed with SIGKILL while streaming, and Ctrl-C; the metrics checked against an
independent computation from what the topics hold (kafka-python), to the cent."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import closing
from typing import Callable

import pytest
from kafka import KafkaConsumer, TopicPartition

from include.pipeline import settings
from tests.harness.expected import assert_as_the_oracle_says, oracle_of_topics
from tests.harness.faults import Watch, against_the_restored_state
from tests.harness.pipeline import ROOT, Pipeline
from tests.oracle import dead_letters_of, order_id_of

pytestmark = pytest.mark.integration

STAGES = ("generate", "process", "analyze", "sink")
TOPICS = (settings.ORDERS, settings.PROCESSED, settings.METRICS, settings.DLQ, settings.ANALYZE_STATE)


class Stream:
    """The supervisor in the background, in a process group of its own (as a terminal's
    foreground job), its output collected line by line."""

    def __init__(self, pipeline: Pipeline, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "include.pipeline.stream", *args], env=pipeline.env, cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True).start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 60, after: int = 0) -> re.Match:
        """The first line from line ``after`` on that matches."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[after:]:
                if match := re.search(pattern, line):
                    return match
            assert self.process.poll() is None, f"the supervisor exited:\n{self.output[-4000:]}"
            time.sleep(0.2)
        pytest.fail(f"no line matching {pattern!r} within {timeout}s:\n{self.output[-4000:]}")

    def pids(self, stage: str) -> list[int]:
        """The pids of a stage's process (``process[1]``: one of several workers), in start order."""
        return [int(pid) for pid in re.findall(rf"{re.escape(stage)} started \(pid (\d+)\)", self.output)]

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the supervisor did not exit within {timeout}s:\n{self.output[-4000:]}")

    def kill_and_wait_for_restart(self, name: str, then: Callable[[], None] = lambda: None) -> None:
        """SIGKILL to a stage's process (``process[1]``: one of several workers), ``then()``, then
        wait until it is restarted and orders reach the store again."""
        (pid,) = self.pids(name)
        mark = len(self.lines)
        os.kill(pid, signal.SIGKILL)
        then()
        killed = rf"{re.escape(name)} was killed by SIGKILL; restarting it in 1s \(restart 1\)"
        self.wait_for(killed, after=mark)
        self.wait_for(rf"{re.escape(name)} started \(pid \d+\)", after=mark)
        # Streaming again, through the store, before the next one goes down.
        self.wait_for(r"sink [1-9][\d,]*/s in.*latency p50", after=len(self.lines))

    def stop(self) -> None:
        """Ctrl-C, as in its terminal: each stage commits or aborts its batch, and the supervisor exits."""
        os.killpg(self.process.pid, signal.SIGINT)
        assert self.wait(timeout=90) == 0

    def kill(self) -> None:
        """A failed test must leave no supervisor or stage behind (the stages end when it does)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def drain(pipeline: Pipeline, *args: str) -> None:
    """The stages started again without a generator (and ``args``), until they have read all there is (a
    stream generating until it is stopped, not for a set time: the kills take as long as the machine
    makes them)."""
    stream = Stream(pipeline, "--rate", "0", "--generate-seconds", "0", "--status-seconds", "2", *args)
    try:
        assert stream.wait(timeout=180) == 0
    finally:
        stream.kill()
    assert "lag at the end: process 0, analyze 0, sink 0" in stream.output, stream.output[-4000:]


def check_every_order_counted_once(pipeline: Pipeline, planted: Counter | None = None) -> int:
    """Every order on `orders` either dead-lettered by process or, exactly once, processed; the
    duplicate and late dead letters exactly those ``planted`` (the generator makes neither); the
    store, metrics.json and the dead letters the oracle's, to the cent. Returns the number of orders."""
    orders, processed, dead = (pipeline.read(t) for t in (settings.ORDERS, settings.PROCESSED, settings.DLQ))
    rejected = [
        (int(r.headers["source.partition"]), int(r.headers["source.offset"]))
        for r in dead if r.headers["source.topic"] == settings.ORDERS.encode()
    ]
    assert len(rejected) == len(set(rejected))
    rejected = set(rejected)
    valid = Counter(order_id_of(r.value).encode() for r in orders if (r.partition, r.offset) not in rejected)
    assert Counter(r.key for r in processed) == valid
    assert len(orders) == len(rejected) + len(processed)
    judged = Counter({k: n for k, n in dead_letters_of(dead).items() if k[0] in ("duplicate", "late")})
    assert judged == (planted or Counter())
    expected = assert_as_the_oracle_says(pipeline, oracle_of_topics(pipeline))
    assert sum(line["order_count"] for line in expected) == len(processed) - judged.total()
    return len(orders)


def plant(pipeline: Pipeline, name: str, planted: Counter) -> None:
    """Right after ``name`` is killed: copies of orders analyze had counted, and orders late
    against its partitions' stream time, for the restarted stages to dead-letter."""
    with closing(Watch(pipeline)) as watch:
        counted_upto = watch.offsets("analyze")
    tag = re.sub(r"\W", "", name)
    added, dead, _ = against_the_restored_state(pipeline, f"{tag}-restart", counted_upto, copies=50)
    pipeline.produce(settings.ORDERS, added)
    planted.update(dead)


def test_each_stage_killed_with_sigkill_while_streaming_is_restarted_and_nothing_is_lost_or_doubled(pipeline):
    stream = Stream(pipeline, "--rate", "2000", "--status-seconds", "2")
    try:
        stream.wait_for(r"latency p50 \d+ ms")  # orders have reached the store
        planted = Counter()
        for stage in STAGES:
            # After each kill but the generator's, copies and late orders for the restart to judge.
            stream.kill_and_wait_for_restart(
                stage, lambda: stage != "generate" and plant(pipeline, stage, planted),
            )
        stream.stop()
    finally:
        stream.kill()
    summary = stream.output[stream.output.index("stopped after"):]
    for stage in STAGES:
        assert len(stream.pids(stage)) == 2
        assert re.search(rf"  {stage} .*\(1 restarts\)", summary), summary
    drain(pipeline)
    orders = check_every_order_counted_once(pipeline, planted)
    # Its throughput is make bench-latency's to measure: here only that it streamed at all, a second's worth.
    assert orders >= 2_000, orders


def test_two_workers_a_stage_one_killed_while_streaming_is_restarted_and_nothing_is_lost_or_doubled(pipeline):
    stream = Stream(pipeline, "--rate", "2000", "--status-seconds", "2", "--workers", "2")
    try:
        stream.wait_for(r"latency p50 \d+ ms")
        planted = Counter()
        for name in ("process[1]", "analyze[0]"):
            stream.kill_and_wait_for_restart(name, lambda: plant(pipeline, name, planted))
        stream.stop()
    finally:
        stream.kill()
    for name in ("process[0]", "process[1]", "analyze[0]", "analyze[1]"):
        assert len(stream.pids(name)) == (2 if name in ("process[1]", "analyze[0]") else 1), name
    drain(pipeline, "--workers", "2")
    assert check_every_order_counted_once(pipeline, planted) >= 2_000


def test_ctrl_c_ends_every_stage_between_transactions_and_the_next_start_reads_nothing_twice(pipeline):
    stream = Stream(pipeline, "--rate", "2000", "--status-seconds", "2")
    try:
        stream.wait_for(r"latency p50 \d+ ms")
        time.sleep(3)
        os.killpg(stream.process.pid, signal.SIGINT)  # what Ctrl-C in its terminal sends
        assert stream.wait(timeout=90) == 0
    finally:
        stream.kill()
    assert re.search(r"stopped after [\d.]+s\n", stream.output)
    assert re.search(r"end-to-end latency over [\d,]+ orders: p50 \d+ ms", stream.output)
    for stage in STAGES:
        (pid,) = stream.pids(stage)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    # No transaction left open: what read_committed readers see ends where the log ends.
    ends = {}
    for isolation in ("read_committed", "read_uncommitted"):
        consumer = KafkaConsumer(bootstrap_servers=pipeline.bootstrap, isolation_level=isolation)
        partitions = [TopicPartition(topic, p) for topic in TOPICS for p in range(settings.partitions())]
        ends[isolation] = consumer.end_offsets(partitions)
        consumer.close()
    assert ends["read_committed"] == ends["read_uncommitted"]
    orders = [TopicPartition(settings.ORDERS, p) for p in range(settings.partitions())]
    assert sum(ends["read_committed"][tp] for tp in orders) > 0

    # Started again without a generator, the stages drain what was left, and nothing twice.
    drain = Stream(pipeline, "--rate", "0", "--generate-seconds", "0", "--status-seconds", "1")
    try:
        assert drain.wait(timeout=120) == 0
    finally:
        drain.kill()
    assert "the generator has finished and every stage has drained" in drain.output
    assert drain.pids("generate") == []
    check_every_order_counted_once(pipeline)
