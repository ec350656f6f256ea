"""Stopping a stage cleanly: one process-wide request to stop, asked between batches.

A stage never stops in the middle of a batch: it finishes the transaction it is in (or aborts
it) and its read ends, so what it committed is exactly what the next try or run continues from.
The request comes from a signal (SIGTERM, SIGINT), from the process that supervises the stage
going away (its parent process, polled: a task whose Airflow supervisor died must not run on
unsupervised), or from the supervisor itself (``request``).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

log = logging.getLogger(__name__)

PARENT_POLL_SECONDS = 0.5

_requested = threading.Event()
_reason: list[str] = []


class Stopped(Exception):
    """A stage was asked to stop before it could finish what must be whole (restoring its state)."""


def request(reason: str) -> None:
    """Ask the stage to stop after the batch it is on; the first reason is the one kept."""
    if not _requested.is_set():
        _reason.append(reason)
        _requested.set()
        log.warning("stopping: %s; the batch in flight commits or aborts, then the stage ends", reason)


def requested() -> bool:
    """Whether a stop was requested: a stage asks between batches."""
    return _requested.is_set()


def reason() -> str | None:
    """Why the stop was requested (the first reason given); None while none was."""
    return _reason[0] if _reason else None


def check() -> None:
    """Raise ``Stopped`` if a stop was requested: for steps whose partial result is no result."""
    if _requested.is_set():
        raise Stopped(reason())


@contextmanager
def supervised(parent: bool = True) -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT request a stop instead of killing the process half-way,
    and so does the parent process going away (``parent``); afterwards the handlers are as they
    were and no stop is pending. Call from the main thread (signal handlers live there)."""
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    for signum in previous:
        signal.signal(signum, lambda received, _: request(f"{signal.Signals(received).name} received"))
    done = threading.Event()
    if parent:
        threading.Thread(target=_watch_parent, args=(os.getppid(), done), daemon=True).start()
    try:
        yield
    finally:
        done.set()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _requested.clear()
        _reason.clear()


def _watch_parent(parent: int, done: threading.Event) -> None:
    # Reparented (to init or a subreaper) means the parent has died. Polling works wherever the
    # stage runs; PR_SET_PDEATHSIG would be Linux-only and fires on the forking thread's exit.
    while not done.wait(PARENT_POLL_SECONDS):
        if os.getppid() != parent:
            request(f"its parent process (pid {parent}), the supervisor, has gone")
            return
