"""One stage in a process of its own, following its topic, reporting each committed batch on
standard output (``telemetry``) for the supervisor."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from include.pipeline import settings
from include.pipeline.domain import telemetry
from include.pipeline.kafka_io.client import Kafka
from include.pipeline.kafka_io.reading import Follow
from include.pipeline.metrics import serving
from include.pipeline.run.results import xcom
from include.pipeline.stages import shutdown
from include.pipeline.stages.calls import CALLS

USAGE_ERROR = 2  # a worker's exit code for a mistake no restart can fix


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
        finish=(lambda: time.time() >= until) if until is not None else (lambda: False),
        measure_since=args.measure_since,
    )
    call = CALLS[stage]
    kwargs = call.kwargs(vars(args), following=True)
    if call.mapped:
        kwargs.update(workers=args.workers, worker=args.share)
    try:
        if args.metrics_port:
            serving.serve(settings.metrics_host(), args.metrics_port)
        with shutdown.supervised():
            result = call.run(Kafka.from_env(), follow=follow, **kwargs)
    except ValueError as exc:
        print(f"{stage}: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except shutdown.Stopped:
        return 0
    report(telemetry.Ended(stage, xcom(result)))
    if args.metrics_port:
        # A stage done by itself (the generator after --generate-seconds) serves its final counts
        # until the stream stops: Prometheus scrapes them, and its target is not down.
        with shutdown.supervised():
            shutdown.wait()
    return 0
