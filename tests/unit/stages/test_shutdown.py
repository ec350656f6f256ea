"""A stop request: from a signal, from the parent process going away, and none left over."""

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from include.pipeline.stages import shutdown

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_within_the_block_requests_a_stop_and_kills_nothing(signum):
    before = signal.getsignal(signum)
    with shutdown.supervised(parent=False):
        os.kill(os.getpid(), signum)
        assert shutdown.requested()
        assert shutdown.reason() == f"{signal.Signals(signum).name} received"
        with pytest.raises(shutdown.Stopped, match=signal.Signals(signum).name):
            shutdown.check()
    assert not shutdown.requested() and shutdown.reason() is None
    assert signal.getsignal(signum) is before


def test_the_first_reason_is_kept():
    with shutdown.supervised(parent=False):
        shutdown.request("first")
        shutdown.request("second")
        assert shutdown.reason() == "first"
    shutdown.check()  # nothing pending after the block


class SlowHandler(logging.Handler):
    """A handler with a plain lock, as a socket's writer has: a signal that arrives while a record
    is being written must not write another one from its handler (that one would wait forever)."""

    def __init__(self) -> None:
        super().__init__()
        self.writing, self.messages = threading.Lock(), []

    def emit(self, record: logging.LogRecord) -> None:
        assert self.writing.acquire(timeout=3), "a log line written from within another one"
        try:
            self.messages.append(record.getMessage())
            if record.getMessage() == "a batch":
                os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-write
        finally:
            self.writing.release()


def test_a_signal_mid_log_line_is_said_after_it_not_within_it():
    handler, log = SlowHandler(), logging.getLogger("include.pipeline")
    log.addHandler(handler)
    try:
        with shutdown.supervised(parent=False):
            log.warning("a batch")
            assert shutdown.requested()
        assert handler.messages == [
            "a batch",
            "stopping: SIGTERM received; the batch in flight commits or aborts, then the stage ends",
        ]
    finally:
        log.removeHandler(handler)


# A stage process under a parent that dies: it must notice by itself and end.
STAGE = """
import sys, time
from include.pipeline.stages import shutdown
with shutdown.supervised():
    print("ready", flush=True)
    deadline = time.monotonic() + 20
    while not shutdown.requested() and time.monotonic() < deadline:
        time.sleep(0.05)
    print(shutdown.reason(), flush=True)
"""
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdout=sys.stdout)
time.sleep(60)
"""


def test_a_stage_whose_parent_dies_stops_by_itself(tmp_path):
    out = tmp_path / "stage.out"
    with out.open("w") as sink:
        parent = subprocess.Popen(
            [sys.executable, "-c", PARENT, STAGE], stdout=sink, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    deadline = time.monotonic() + 30
    while "ready" not in out.read_text():
        assert time.monotonic() < deadline, "the stage did not start"
        time.sleep(0.05)
    parent.kill()
    parent.wait()
    killed = time.monotonic()
    while len(out.read_text().splitlines()) < 2:
        assert time.monotonic() - killed < 5, "the stage ran on after its parent died"
        time.sleep(0.05)
    assert out.read_text().splitlines() == [
        "ready", f"its parent process (pid {parent.pid}), the supervisor, has gone",
    ]
