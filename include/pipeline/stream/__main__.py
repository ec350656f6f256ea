"""``python -m include.pipeline.stream``: continuous mode's command line (``make stream``)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import msgspec

import include.pipeline.stream as pipeline_stream
from include.pipeline.domain.analyzer import check_horizon
from include.pipeline.run.params import CATALOGUE
from include.pipeline.stream.report import STAGES
from include.pipeline.stream.supervisor import Supervisor
from include.pipeline.stream.worker import work

# The run params of continuous mode, as the stream DAG's (``run.params``), but 0 orders a second
# runs no generator.
RUN_PARAMS = [
    msgspec.structs.replace(
        CATALOGUE["rate"], default=30.0, description="Orders a second to generate (0: no generator)",
    ),
    *(CATALOGUE[name] for name in (
        "invalid_ratio", "commit_interval_ms", "grace_seconds", "dedup_horizon_seconds", "metrics_json_days",
        "workers",
    )),
]


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked: a bad value stops it at once, saying which and why."""
    parser = argparse.ArgumentParser(prog="make stream", description=pipeline_stream.__doc__.split("\n\n")[0])
    parser.add_argument("--status-seconds", type=float, default=5.0, help="seconds between status lines")
    parser.add_argument("--seconds", type=float, help="stop after this long (default: at Ctrl-C)")
    parser.add_argument("--generate-seconds", type=float,
                        help="generate for this long, then exit once the other stages have drained")
    parser.add_argument("--warmup-seconds", type=float, default=0.0,
                        help="leave the orders produced in the first seconds out of the latencies")
    parser.add_argument("--summary", type=Path, help="also write the summary to this file, as JSON")
    for param in RUN_PARAMS:
        kind = {"integer": int, "number": float}[param.type]
        help = param.description.replace("%", "%%")  # argparse formats help: "p % n" is no format
        parser.add_argument(param.flag, type=kind, default=param.default, help=help)
    parser.add_argument("--worker", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--share", type=int, default=0, help=argparse.SUPPRESS)  # the worker's index
    parser.add_argument("--generate-until", type=float, help=argparse.SUPPRESS)  # epoch seconds
    parser.add_argument("--measure-since", type=float, default=0.0, help=argparse.SUPPRESS)  # epoch seconds
    parser.add_argument("--metrics-port", type=int, default=0, help=argparse.SUPPRESS)  # 0: none
    args = parser.parse_args(argv)
    problems = [
        found for param in RUN_PARAMS if (found := param.problem(getattr(args, param.name), param.flag))
    ]
    if args.status_seconds <= 0:
        problems.append(f"--status-seconds must be above 0, got {args.status_seconds:g}")
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
