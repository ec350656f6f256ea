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
_announced = threading.Event()
_reason: list[str] = []


class Stopped(Exception):
    """A stage was asked to stop before it could finish what must be whole (restoring its state)."""


def request(reason: str) -> None:
    """Ask the stage to stop after the batch it is on; the first reason is the one kept. Not from
    a signal handler: it logs (``supervised``'s handlers only record, its watcher logs)."""
    _record(reason)
    _announce()


def _record(reason: str) -> None:
    # No I/O here: in a signal handler, a log line written while the interrupted code
    # was writing one fails ("reentrant call") or waits forever on the lock that code holds.
    if not _requested.is_set():
        _reason.append(reason)
        _requested.set()


def _announce() -> None:
    if _requested.is_set() and not _announced.is_set():
        _announced.set()
        log.warning("stopping: %s; the batch in flight commits or aborts, then the stage ends", reason())


def requested() -> bool:
    """Whether a stop was requested: a stage asks between batches."""
    return _requested.is_set()


def wait() -> None:
    """Block until a stop is requested (a signal, or the supervising process gone)."""
    _requested.wait()


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
        signal.signal(signum, lambda received, _: _record(f"{signal.Signals(received).name} received"))
    done = threading.Event()
    threading.Thread(target=_watch, args=(os.getppid() if parent else None, done), daemon=True).start()
    try:
        yield
    finally:
        done.set()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _announce()
        _requested.clear()
        _announced.clear()
        _reason.clear()


def _watch(parent: int | None, done: threading.Event) -> None:
    """Says why the stage stops once a stop is requested, and requests one when ``parent`` has
    died: reparented (to init or a subreaper). Polling works wherever the stage runs;
    PR_SET_PDEATHSIG would be Linux-only and fires on the forking thread's exit."""
    while not done.wait(PARENT_POLL_SECONDS):
        if parent is not None and os.getppid() != parent:
            _record(f"its parent process (pid {parent}), the supervisor, has gone")
        _announce()
