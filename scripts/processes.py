"""What the throwaway servers of scripts/ share (standard library only: `make redis-up` and
`make observability-up` run them with the system's Python)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable


def terminate(process: subprocess.Popen | None, grace: float = 10) -> None:
    """SIGTERM a server this process started, then SIGKILL if it has not exited after ``grace``
    seconds; nothing if it was never started or has exited."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def stop_daemon(pid: int, grace: float = 10) -> None:
    """SIGTERM a daemon by its pid (from its pid file) and wait, up to ``grace`` seconds, until
    it has exited."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def wait_until(
    answers: Callable[[], bool], name: str, process: subprocess.Popen | None, log: Path, timeout: float = 30,
) -> None:
    """Until ``answers()``; a ``process`` that exits first, or ``timeout`` seconds, raises with the
    tail of its ``log``, which says why ``name`` did not start."""
    deadline = time.monotonic() + timeout
    while not answers():
        exited = process is not None and process.poll() is not None
        if exited or time.monotonic() > deadline:
            text = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"{name} did not start:\n{text[-3000:]}")
        time.sleep(0.1)
