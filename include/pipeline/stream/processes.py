"""The stage processes of continuous mode: each started, restarted with backoff when it dies, its
report lines read, and all of them stopped."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from include.pipeline import settings, topology
from include.pipeline.domain import telemetry
from include.pipeline.stream.report import say
from include.pipeline.stream.worker import FINISH, USAGE_ERROR

BACKOFF_FIRST, BACKOFF_MAX, HEALTHY_SECONDS = 1.0, 30.0, 60.0
STOP_SECONDS = 60.0  # how long a stage gets to commit or abort and exit before it is killed


@dataclass
class Child:
    """One stage's process, restarted with backoff when it dies."""

    stage: str
    share: int | None = None  # of a stage run as several workers: its index
    process: subprocess.Popen | None = None
    started: float = 0.0
    restarts: int = 0
    backoff: float = BACKOFF_FIRST
    start_at: float = 0.0  # when to start it (again)
    done: bool = False  # it ended by itself (a generator whose time is up)
    metrics_port: int = 0  # where it serves /metrics (0: nowhere)

    @property
    def name(self) -> str:
        """The stage, with ``[index]`` for one of several workers."""
        return self.stage if self.share is None else f"{self.stage}[{self.share}]"


class StageProcesses:
    """A process per stage (``workers`` of each scalable one), each running this package with
    ``--worker STAGE``, the supervisor's own arguments and the stage's ``extra`` ones; what they
    report comes in on ``reports``. Each serves its metrics on ``metrics_port`` plus its index
    in the list (0: none serves them)."""

    def __init__(
        self, names: list[str], argv: list[str], extra: dict[str, list[str]], workers: int = 1,
        metrics_port: int = 0,
    ) -> None:
        scalable = topology.names(topology.SCALABLE)
        children = [
            Child(stage, share) for stage in names
            for share in (range(workers) if workers > 1 and stage in scalable else [None])
        ]
        for index, child in enumerate(children if metrics_port else []):
            child.metrics_port = metrics_port + index
        self.children = {child.name: child for child in children}
        self.argv, self.extra = argv, extra
        self.finishing: set[str] = set()  # stages told to finish (``finish``)
        self.reports: queue.Queue = queue.Queue()
        self.readers: list[threading.Thread] = []

    def next_report(self) -> telemetry.Tick | telemetry.Ended | None:
        """The next line a stage reported; None when there is none now."""
        try:
            return self.reports.get_nowait()
        except queue.Empty:
            return None

    def start(self, child: Child) -> None:
        """Start the stage's process, and a thread that reads its reports."""
        command = [sys.executable, "-m", "include.pipeline.stream", "--worker", child.stage, *self.argv]
        if child.share is not None:
            command += ["--share", str(child.share)]
        if child.metrics_port:
            command += ["--metrics-port", str(child.metrics_port)]
        command += self.extra.get(child.stage, [])
        child.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=settings.PROJECT_ROOT,
            start_new_session=True,  # Ctrl-C reaches the supervisor only; it tells the stages
        )
        child.started = time.monotonic()
        if child.stage in self.finishing:  # restarted after its stage was told: told again
            self.tell(child)
        reader = threading.Thread(target=self.read_reports, args=(child.process,), daemon=True)
        reader.start()
        self.readers.append(reader)
        say(f"{child.name} started (pid {child.process.pid})")

    def finish(self, stage: str) -> None:
        """Tell each process of ``stage`` (and any restarted later) to finish: to read its input up
        to the ends written then and exit (``worker.told_to_finish``). Once a stage."""
        if stage not in self.finishing:
            self.finishing.add(stage)
            for child in self.children.values():
                if child.stage == stage and child.process is not None:
                    self.tell(child)

    def tell(self, child: Child) -> None:
        """Write FINISH to the child's standard input (one that died meanwhile is told on its restart)."""
        try:
            child.process.stdin.write(FINISH)
            child.process.stdin.flush()
        except BrokenPipeError:
            pass

    def count(self, stage: str) -> int:
        """The processes of ``stage``."""
        return sum(child.stage == stage for child in self.children.values())

    def read_reports(self, process: subprocess.Popen) -> None:
        """Pass on the report lines of a stage's process until it closes its output."""
        for line in process.stdout:
            if (report := telemetry.read_report(line)) is not None:
                self.reports.put(report)

    def look_after(self) -> int | None:
        """Start what is due to start; note what has ended. Returns an exit code to stop with."""
        now = time.monotonic()
        for child in self.children.values():
            if child.done:
                continue
            if child.process is None:
                if now >= child.start_at:
                    self.start(child)
                continue
            code = child.process.poll()
            if code is None:
                if now - child.started >= HEALTHY_SECONDS:
                    child.backoff = BACKOFF_FIRST
                continue
            child.process = None
            if code == 0:  # it ended by itself, and said so (the supervisor's collect)
                child.done = True
            elif code == USAGE_ERROR:
                say(f"{child.name} cannot run with these settings (see its message above); stopping")
                return USAGE_ERROR
            else:
                how = (
                    f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
                )
                child.restarts += 1
                child.start_at = now + child.backoff
                say(f"{child.name} {how}; restarting it in {child.backoff:g}s (restart {child.restarts})")
                child.backoff = min(child.backoff * 2, BACKOFF_MAX)
        return None

    def stop(self) -> None:
        """SIGTERM to every stage; a stage not gone within STOP_SECONDS is killed."""
        running = [child for child in self.children.values() if child.process is not None]
        for child in running:
            child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for child in running:
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{child.name} did not stop within {STOP_SECONDS:g}s; killing it")
                child.process.kill()
                child.process.wait()
        for reader in self.readers:  # until each has passed on its process's last lines
            reader.join(timeout=5)
