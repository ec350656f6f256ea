"""Crash faults in the middle of a stage, each ending exactly as the data contract says a clean run
of the same input ends (the oracle, tests/oracle.py), with every order accounted for:

- test_kill_9_mid_batch_then_retry: `process` is killed with SIGKILL while a batch's transaction
  is open (some batches committed, not all), and run again (Airflow's retry); the same for
  `analyze`; then `sink`. After each kill, before the retry, `orders` gets copies of orders
  counted before it and orders late against the stream time it restores
  (tests/harness/faults.py): the retry dead-letters exactly those. The input is newest first, so
  that those orders are late only against the restored stream time, not against what the retry
  reads before them.
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
(tests/harness/stage_process.py); the one stopped with SIGTERM is the Airflow task (`airflow
tasks test`), whose own handling of the signal is what is tested. The retries are the task, run
in the test's process (as `tasks test` runs it).

"Mid-batch" is made deterministic: the stage's process group is frozen (SIGSTOP) every few tens of
milliseconds and looked at from outside with kafka-python; the fault is injected only in a frozen
state where some input offsets are committed, not all, and the stage's open transaction has records
on the broker and is Ongoing at its coordinator (not being committed). (Polling every 0.1 s would
alias with analyze's ~0.1 s batches and miss them.)
"""

import os
import signal
import subprocess
import time
from collections import Counter
from contextlib import closing

import psutil

from tests.harness.expected import oracle_of
from tests.harness.faults import (
    ORDERS,
    Watch,
    against_the_restored_state,
    assert_dead_lettered_as_planted,
    assert_every_order_once,
    end_of,
    freeze_mid_batch,
    kill_one_instance_mid_batch,
    write_input,
)


def test_kill_9_mid_batch_then_retry(pipeline):
    records = write_input(pipeline, seed=20260105, newest_first=True)
    runs, planted = [[value for _, value in records]], Counter()
    for stage in ("process", "analyze"):
        end = end_of(pipeline, stage)
        with pipeline.running(stage) as proc:
            done = freeze_mid_batch(pipeline, proc, stage, end)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        with closing(Watch(pipeline)) as watch:
            # Really killed mid-way (seen frozen, and it is gone: nothing more can commit): the
            # open batch never committed, and its transaction is left open (a zombie) for the
            # retry's init_transactions to abort.
            assert 0 < watch.committed(stage) == done < end
            assert watch.open_transaction(stage)
            counted_upto = watch.offsets("analyze") if stage == "analyze" else None
        # Copies of orders counted before the kill, and orders late against the stream time it
        # restores (process: that its committed output will give analyze).
        added, dead, only_restored = against_the_restored_state(pipeline, stage, counted_upto)
        # (analyze's batches come a partition or a few at a time: one that counted is enough)
        assert only_restored, "no partition where the late orders are late only against the restored state"
        pipeline.produce("orders", added)
        runs.append([value for _, value in added])
        planted += dead
        if stage == "analyze":
            pipeline.task("process")  # the next run's process brings them to processed-orders
        pipeline.task(stage)  # Airflow's retry
        with closing(Watch(pipeline)) as watch:
            assert watch.committed(stage) == end_of(pipeline, stage)
            assert not watch.open_transaction(stage)
    pipeline.task("sink")
    assert_dead_lettered_as_planted(pipeline, planted)
    assert_every_order_once(pipeline, oracle_of(*runs))


def test_kill_9_of_one_analyze_instance_mid_batch_then_its_retry(pipeline):
    # An instance reads half the orders: enough batches that it is caught in one (the batch path
    # counted 19,000 before the first look).
    records = write_input(pipeline, seed=20260108, orders=3 * ORDERS, newest_first=True)
    pipeline.task("process")
    mine, theirs = [1, 3, 5], [0, 2, 4]  # instance 1 of 2, round robin over the 6 partitions
    kill_one_instance_mid_batch(pipeline, "analyze", mine, theirs)
    with closing(Watch(pipeline)) as watch:
        counted_upto = watch.offsets("analyze")
    added, planted, only_restored = against_the_restored_state(pipeline, "analyze", counted_upto)
    assert only_restored and set(only_restored) <= set(mine), only_restored
    pipeline.produce("orders", added)
    pipeline.task("process")
    pipeline.task("analyze", params={"workers": 2}, map_index=1)  # Airflow's retry of that instance
    with closing(Watch(pipeline)) as watch:
        assert watch.committed("analyze", mine) == end_of(pipeline, "analyze", mine)
        assert watch.committed("analyze", theirs) == 0
        assert not watch.open_transaction("analyze")
    pipeline.task("analyze", params={"workers": 2}, map_index=0)
    with closing(Watch(pipeline)) as watch:
        assert watch.committed("analyze") == end_of(pipeline, "analyze")
    pipeline.task("sink")
    assert_dead_lettered_as_planted(pipeline, planted)
    assert_every_order_once(pipeline, oracle_of(*([value for _, value in run] for run in (records, added))))


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
    assert_every_order_once(pipeline, oracle_of([value for _, value in records]))


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
    assert_every_order_once(pipeline, oracle_of([value for _, value in records]))
    assert hung is None, hung
