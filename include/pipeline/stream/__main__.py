"""``python -m include.pipeline.stream``: continuous mode's command line (``make stream``)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import include.pipeline.stream as pipeline_stream
from include.pipeline import settings
from include.pipeline.domain.analyzer import check_horizon
from include.pipeline.stream.report import STAGES
from include.pipeline.stream.supervisor import Supervisor
from include.pipeline.stream.worker import work


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked: a bad value stops it at once, saying which and why."""
    parser = argparse.ArgumentParser(prog="make stream", description=pipeline_stream.__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=30.0,
                        help="orders a second to generate (0: no generator)")
    parser.add_argument("--invalid-ratio", type=float, default=0.05,
                        help="share of deliberately invalid orders")
    parser.add_argument("--commit-interval-ms", type=float, default=100.0,
                        help="longest a batch collects records before its transaction commits")
    parser.add_argument("--status-seconds", type=float, default=5.0, help="seconds between status lines")
    parser.add_argument("--seconds", type=float, help="stop after this long (default: at Ctrl-C)")
    parser.add_argument("--generate-seconds", type=float,
                        help="generate for this long, then exit once the other stages have drained")
    parser.add_argument("--warmup-seconds", type=float, default=0.0,
                        help="leave the orders produced in the first seconds out of the latencies")
    parser.add_argument("--summary", type=Path, help="also write the summary to this file, as JSON")
    parser.add_argument("--grace-seconds", type=float, default=settings.GRACE_SECONDS,
                        help="how long after a window ends its late orders still count")
    parser.add_argument("--dedup-horizon-seconds", type=float, default=settings.DEDUP_HORIZON_SECONDS,
                        help="how long a counted order_id is remembered (>= grace)")
    parser.add_argument("--metrics-json-days", type=int, default=settings.METRICS_JSON_DAYS,
                        help="days of windows the sink exports to metrics.json when it stops (0: none)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes of each of process and analyze, each on its share of the partitions")
    parser.add_argument("--worker", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--share", type=int, default=0, help=argparse.SUPPRESS)  # the worker's index
    parser.add_argument("--generate-until", type=float, help=argparse.SUPPRESS)  # epoch seconds
    parser.add_argument("--measure-since", type=float, default=0.0, help=argparse.SUPPRESS)  # epoch seconds
    args = parser.parse_args(argv)
    problems = []
    if args.rate < 0:
        problems.append(f"--rate must be 0 or more, got {args.rate:g}")
    if not 0 <= args.invalid_ratio <= 1:
        problems.append(f"--invalid-ratio must be between 0 and 1, got {args.invalid_ratio:g}")
    if not 1 <= args.commit_interval_ms <= 60_000:
        problems.append(f"--commit-interval-ms must be between 1 and 60000, got {args.commit_interval_ms:g}")
    if args.status_seconds <= 0:
        problems.append(f"--status-seconds must be above 0, got {args.status_seconds:g}")
    if args.workers < 1:
        problems.append(f"--workers must be 1 or more, got {args.workers}")
    if args.metrics_json_days < 0:
        problems.append(f"--metrics-json-days must be 0 or more, got {args.metrics_json_days}")
    try:
        check_horizon(args.grace_seconds, args.dedup_horizon_seconds)
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        parser.error("; ".join(problems))
    return args


def main(argv: list[str] | None = None) -> int:
    """The supervisor, or (``--worker STAGE``) one stage's process."""
    argv = sys.argv[1:] if argv is None else argv
    args = arguments(argv)
    if args.worker:
        return work(args.worker, args)
    logging.basicConfig(level=logging.WARNING, format="stream: %(levelname)s %(message)s")
    return Supervisor(args, argv).run()


if __name__ == "__main__":
    sys.exit(main())
