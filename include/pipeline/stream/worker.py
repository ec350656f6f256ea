"""One stage in a process of its own, following its topic, reporting each committed batch on
standard output (``telemetry``) for the supervisor."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from typing import BinaryIO, Callable

from include.pipeline import settings
from include.pipeline.domain import telemetry
from include.pipeline.kafka_io.client import Kafka
from include.pipeline.kafka_io.reading import Follow
from include.pipeline.metrics import serving
from include.pipeline.run.results import xcom
from include.pipeline.stages import shutdown
from include.pipeline.stages.calls import CALLS

USAGE_ERROR = 2  # a worker's exit code for a mistake no restart can fix
FINISH = b"finish\n"  # the supervisor's line on a worker's standard input: its upstream has ended


def work(stage: str, args: argparse.Namespace) -> int:
    """Run one stage following its topic until signalled, or until the supervisor has gone,
    serving its metrics on ``--metrics-port`` (a port it cannot have: a usage error)."""
    logging.basicConfig(level=logging.WARNING, format=f"{stage}: %(levelname)s %(message)s")
    out = sys.stdout.buffer

    def report(line: telemetry.Tick | telemetry.Ended) -> None:
        out.write(telemetry.report_line(line))
        out.flush()

    def committed(stage: str, read: int, written: int, latencies: telemetry.Latencies | None) -> None:
        report(telemetry.Tick(stage, read, written, latencies or telemetry.Latencies()))

    until = args.generate_until
    follow = Follow(
        interval=args.commit_interval_ms / 1000, report=committed,
        finish=(lambda: time.time() >= until) if until is not None else told_to_finish(),
        measure_since=args.measure_since,
    )
    call = CALLS[stage]
    kwargs = call.kwargs(vars(args), following=True)
    if call.mapped:
        kwargs.update(workers=args.workers, worker=args.share)
    served = None
    try:
        if args.metrics_port:
            served = serving.serve(settings.metrics_host(), args.metrics_port)
        with shutdown.supervised():
            result = call.run(Kafka.from_env(), follow=follow, **kwargs)
    except ValueError as exc:
        print(f"{stage}: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except shutdown.Stopped:
        return 0
    report(telemetry.Ended(stage, xcom(result)))
    if served is not None:
        # A stage done (the generator after --generate-seconds, or told to finish) serves its final
        # counts until the stream stops, and until a scrape has read them: its target is not down,
        # and Prometheus does not keep the counts of the scrape before its last batch.
        with shutdown.supervised():
            shutdown.wait()
        served.final_scrape()
    return 0


def told_to_finish() -> Callable[[], bool]:
    """Whether the supervisor has said FINISH on standard input (``listen``, in a thread of its
    own): asked between batches, it ends the stage's read at the ends then written."""
    told = threading.Event()
    # Unbuffered: a daemon thread blocked in a buffered read holds its lock, and the interpreter's
    # exit then aborts the process.
    stdin = open(sys.stdin.fileno(), "rb", buffering=0, closefd=False)
    threading.Thread(target=listen, args=(stdin, told), daemon=True).start()
    return told.is_set


def listen(lines: BinaryIO, told: threading.Event) -> None:
    """Set ``told`` at a FINISH line of ``lines``; until they end (the supervisor has gone)."""
    for line in lines:
        if line == FINISH:
            told.set()
