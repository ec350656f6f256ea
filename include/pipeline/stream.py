"""Continuous mode (``make stream``): generate, process, analyze and sink following their topics,
each in a process of its own under one supervisor, in the foreground.

    python -m include.pipeline.stream [--rate 30] [--commit-interval-ms 100] [--seconds S]

Every ``--status-seconds`` it prints one line: orders a second into and out of each stage, each
stage's lag and the end-to-end latency (p50, p99) of the orders whose totals became visible in
that interval. Ctrl-C (SIGINT) or SIGTERM stops it: each stage commits the batch it is on, or
aborts it, and exits; then a summary is printed. A stage process that dies is restarted, with
backoff. With ``--generate-seconds`` the generator stops after that long and the supervisor
exits once the other stages have drained (lag 0).

The stage processes run this module with ``--worker STAGE``: they report each committed batch
as a ``telemetry.Tick`` line on standard output and stop when the supervisor has gone (they are
reparented) as when signalled (``shutdown``).
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from include.pipeline import settings, shutdown, stages, telemetry
from include.pipeline.analyzer import check_horizon
from include.pipeline.kafka_io import Follow, Kafka, LagProbe
from include.pipeline.lag import lag
from include.pipeline.metrics_store import MetricsStore

log = logging.getLogger(__name__)

STAGES = ("generate", "process", "analyze", "sink")
INPUT = {"process": settings.ORDERS, "analyze": settings.PROCESSED, "sink": settings.METRICS}
USAGE_ERROR = 2  # a worker's exit code for a mistake no restart can fix
BACKOFF_FIRST, BACKOFF_MAX, HEALTHY_SECONDS = 1.0, 30.0, 60.0
STOP_SECONDS = 60.0  # how long a stage gets to commit or abort and exit before it is killed


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make stream", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=30.0, help="orders a second to generate (0: no generator)")
    parser.add_argument("--invalid-ratio", type=float, default=0.05, help="share of deliberately invalid orders")
    parser.add_argument("--commit-interval-ms", type=float, default=100.0,
                        help="longest a batch collects records before its transaction commits")
    parser.add_argument("--status-seconds", type=float, default=5.0, help="seconds between status lines")
    parser.add_argument("--seconds", type=float, help="stop after this long (default: at Ctrl-C)")
    parser.add_argument("--generate-seconds", type=float,
                        help="generate for this long, then exit once the other stages have drained")
    parser.add_argument("--warmup-seconds", type=float, default=0.0,
                        help="leave the latencies of the first seconds out of the summary")
    parser.add_argument("--summary", type=Path, help="also write the summary to this file, as JSON")
    parser.add_argument("--grace-seconds", type=float, default=settings.GRACE_SECONDS,
                        help="how long after a window ends its late orders still count")
    parser.add_argument("--dedup-horizon-seconds", type=float, default=settings.DEDUP_HORIZON_SECONDS,
                        help="how long a counted order_id is remembered (>= grace)")
    parser.add_argument("--metrics-json-days", type=int, default=settings.METRICS_JSON_DAYS,
                        help="days of windows the sink exports to metrics.json when it stops (0: none)")
    parser.add_argument("--worker", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--generate-until", type=float, help=argparse.SUPPRESS)  # epoch seconds
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
    if args.metrics_json_days < 0:
        problems.append(f"--metrics-json-days must be 0 or more, got {args.metrics_json_days}")
    try:
        check_horizon(args.grace_seconds, args.dedup_horizon_seconds)
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        parser.error("; ".join(problems))
    return args


# The stage processes.

def work(stage: str, args: argparse.Namespace) -> int:
    """Run one stage following its topic until signalled, or until the supervisor has gone."""
    logging.basicConfig(level=logging.WARNING, format=f"{stage}: %(levelname)s %(message)s")
    out = sys.stdout.buffer

    def report(line: telemetry.Tick | telemetry.Ended) -> None:
        out.write(telemetry.report_line(line))
        out.flush()

    until = args.generate_until
    follow = Follow(
        interval=args.commit_interval_ms / 1000, report=report,
        finish=(lambda: time.time() >= until) if until is not None else (lambda: False),
    )
    kwargs = {
        "generate": {"rate": args.rate, "invalid_ratio": args.invalid_ratio},
        "analyze": {"grace_seconds": args.grace_seconds, "dedup_horizon_seconds": args.dedup_horizon_seconds},
        "sink": {"metrics_json_days": args.metrics_json_days},
    }.get(stage, {})
    try:
        with shutdown.supervised():
            result = getattr(stages, stage)(Kafka.from_env(), follow=follow, **kwargs)
    except ValueError as exc:
        print(f"{stage}: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except shutdown.Stopped:
        return 0
    report(telemetry.Ended(stage, result))
    return 0


# The supervisor.

@dataclass
class Interval:
    """What the stages reported since the last status line (or since the start)."""

    started: float = field(default_factory=time.monotonic)
    read: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))
    written: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))
    latencies: telemetry.Latencies = field(default_factory=telemetry.Latencies)

    def add(self, tick: telemetry.Tick) -> None:
        self.read[tick.stage] += tick.read
        self.written[tick.stage] += tick.written
        self.latencies.merge(tick.latencies)


@dataclass
class Child:
    """One stage's process, restarted with backoff when it dies."""

    stage: str
    process: subprocess.Popen | None = None
    started: float = 0.0
    restarts: int = 0
    backoff: float = BACKOFF_FIRST
    start_at: float = 0.0  # when to start it (again)
    done: bool = False  # it ended by itself (a generator whose time is up)


class Supervisor:
    def __init__(self, args: argparse.Namespace, argv: list[str]) -> None:
        self.args, self.argv = args, argv  # the stage processes get the same arguments
        self.names = [stage for stage in STAGES if stage != "generate" or args.rate > 0]
        self.children = {stage: Child(stage) for stage in self.names}
        self.reports: queue.Queue = queue.Queue()
        self.stopping = threading.Event()
        self.started = time.monotonic()
        self.interval, self.total, self.measured = Interval(), Interval(), telemetry.Latencies()
        self.results: dict[str, dict] = {}
        self.readers: list[threading.Thread] = []
        self.generate_until = None if args.generate_seconds is None else time.time() + args.generate_seconds

    def run(self) -> int:
        try:
            kafka = Kafka.from_env()
            stages.create_topics(kafka, self.names)
        except (ConnectionError, ValueError) as exc:
            print(f"stream: {exc}", file=sys.stderr)
            return 1
        self.probe = LagProbe(kafka, {topic: stages.group(stage) for stage, topic in INPUT.items()}, quiet=True)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: self.stopping.set())
        store = MetricsStore.default().name
        say(f"streaming {', '.join(self.names)} on {kafka.config['bootstrap.servers']} into {store}; "
            f"a transaction every {self.args.commit_interval_ms:g} ms; Ctrl-C stops")
        status_at = time.monotonic() + self.args.status_seconds
        code = 0
        while not self.stopping.wait(0.2):
            self.collect()
            if (failed := self.look_after_children()) is not None:
                code = failed
                break
            now = time.monotonic()
            if now >= status_at:
                status_at = now + self.args.status_seconds
                lags = self.lags()
                say(self.status(lags))
                if self.drained(lags):
                    say("the generator has finished and every stage has drained")
                    break
            if self.args.seconds is not None and now - self.started >= self.args.seconds:
                break
        lags = self.lags()
        self.stop()
        self.collect()
        summary = self.summary(lags)
        for line in render(summary):
            say(line)
        if self.args.summary:
            self.args.summary.parent.mkdir(parents=True, exist_ok=True)
            self.args.summary.write_text(json.dumps(summary, indent=2) + "\n")
        self.probe.close()
        return code

    def start(self, child: Child) -> None:
        command = [sys.executable, "-m", "include.pipeline.stream", "--worker", child.stage, *self.argv]
        if child.stage == "generate" and self.generate_until is not None:
            command += ["--generate-until", repr(self.generate_until)]
        child.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, cwd=settings.PROJECT_ROOT,
            start_new_session=True,  # Ctrl-C reaches the supervisor only; it tells the stages
        )
        child.started = time.monotonic()
        reader = threading.Thread(target=self.read_reports, args=(child.process,), daemon=True)
        reader.start()
        self.readers.append(reader)
        say(f"{child.stage} started (pid {child.process.pid})")

    def read_reports(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            if (report := telemetry.read_report(line)) is not None:
                self.reports.put(report)

    def collect(self) -> None:
        warm = time.monotonic() - self.started >= self.args.warmup_seconds
        while True:
            try:
                report = self.reports.get_nowait()
            except queue.Empty:
                return
            if isinstance(report, telemetry.Ended):
                self.results[report.stage] = report.result
                continue
            self.interval.add(report)
            self.total.add(report)
            if warm:
                self.measured.merge(report.latencies)

    def look_after_children(self) -> int | None:
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
            if code == 0:
                child.done = True
                say(f"{child.stage} finished")
            elif code == USAGE_ERROR:
                say(f"{child.stage} cannot run with these settings (see its message above); stopping")
                return USAGE_ERROR
            else:
                how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
                child.restarts += 1
                child.start_at = now + child.backoff
                say(f"{child.stage} {how}; restarting it in {child.backoff:g}s (restart {child.restarts})")
                child.backoff = min(child.backoff * 2, BACKOFF_MAX)
        return None

    def lags(self) -> dict[str, int]:
        try:
            per_topic = lag(*self.probe.offsets(timeout=10))
        except Exception as exc:  # a status line without lag beats a supervisor that dies
            log.warning("could not read the consumer lag: %s", exc)
            return {}
        return {stage: per_topic.get(topic, 0) for stage, topic in INPUT.items()}

    def drained(self, lags: dict[str, int]) -> bool:
        generator = self.children.get("generate")
        return (
            self.generate_until is not None and (generator is None or generator.done)
            and bool(lags) and not any(lags.values())
        )

    def stop(self) -> None:
        running = [child for child in self.children.values() if child.process is not None]
        for child in running:
            child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for child in running:
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{child.stage} did not stop within {STOP_SECONDS:g}s; killing it")
                child.process.kill()
                child.process.wait()
        for reader in self.readers:  # until each has passed on its process's last lines
            reader.join(timeout=5)

    def status(self, lags: dict[str, int]) -> str:
        seconds = max(time.monotonic() - self.interval.started, 1e-3)
        read, written = self.interval.read, self.interval.written
        parts = []
        for stage in self.names:
            if stage == "generate":
                parts.append(f"generate {written[stage] / seconds:,.0f}/s")
                continue
            out = "rows" if stage == "sink" else "out"
            parts.append(
                f"{stage} {read[stage] / seconds:,.0f}/s in, {written[stage] / seconds:,.0f}/s {out}, "
                f"lag {lags[stage] if stage in lags else '?'}"
            )
        latency = self.interval.latencies
        if latency.orders:
            parts.append(f"latency p50 {latency.percentile(50)} ms, p99 {latency.percentile(99)} ms "
                         f"({latency.orders:,} orders)")
        else:
            parts.append("latency -")
        self.interval = Interval()
        return " | ".join(parts)

    def summary(self, lags: dict[str, int]) -> dict:
        return {
            "seconds": round(time.monotonic() - self.started, 1),
            "rate": self.args.rate,
            "commit_interval_ms": self.args.commit_interval_ms,
            "warmup_seconds": self.args.warmup_seconds,
            "latency": self.measured.summary(),
            "lag_at_end": sum(lags.values()) if lags else None,
            "lag": lags,
            "stages": {
                stage: {
                    "read": self.total.read[stage], "written": self.total.written[stage],
                    "restarts": self.children[stage].restarts,
                }
                for stage in self.names
            },
            "results": self.results,
        }


def render(summary: dict) -> list[str]:
    lines = [f"stopped after {summary['seconds']:g}s"]
    for stage, counts in summary["stages"].items():
        what = {"generate": f"{counts['written']:,} orders generated",
                "sink": f"{counts['read']:,} metrics records read, {counts['written']:,} rows changed"}.get(
            stage, f"{counts['read']:,} read, {counts['written']:,} written")
        restarts = f" ({counts['restarts']} restarts)" if counts["restarts"] else ""
        lines.append(f"  {stage:<9}{what}{restarts}")
    if sink := summary["results"].get("sink"):
        lines.append(f"  store    {sink['order_count']:,} orders, revenue {sink['total_revenue']} in "
                     f"{sink['metrics']:,} rows ({sink['store']})")
    latency = summary["latency"]
    if latency["orders"]:
        lines.append(
            f"  end-to-end latency over {latency['orders']:,} orders: p50 {latency['p50_ms']} ms, "
            f"p95 {latency['p95_ms']} ms, p99 {latency['p99_ms']} ms, max {latency['max_ms']} ms"
        )
    if summary["lag"]:
        lines.append("  lag at the end: " + ", ".join(f"{stage} {n:,}" for stage, n in summary["lag"].items()))
    return lines


def say(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = arguments(argv)
    if args.worker:
        return work(args.worker, args)
    logging.basicConfig(level=logging.WARNING, format="stream: %(levelname)s %(message)s")
    return Supervisor(args, argv).run()


if __name__ == "__main__":
    sys.exit(main())
