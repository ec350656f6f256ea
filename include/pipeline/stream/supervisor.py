"""The supervisor of continuous mode: it runs the stage processes, prints a status line every few
seconds, and stops them at Ctrl-C or at ``--seconds``; or, once the generator has finished, hands
its orders over stage by stage: each stage, once every stage before it has ended, is told to
finish (to read its input up to the ends written then, all of it, and end)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time

from include.pipeline import settings, stages, topology
from include.pipeline.domain import telemetry
from include.pipeline.kafka_io.client import Kafka
from include.pipeline.kafka_io.lag import lag
from include.pipeline.kafka_io.lag_probe import LagProbe
from include.pipeline.metrics import serving
from include.pipeline.run.results import run_results, xcom
from include.pipeline.stream.processes import StageProcesses
from include.pipeline.stream.report import STAGES, Interval, render, say

log = logging.getLogger(__name__)

INPUT = {stage.name: stage.input for stage in topology.CONSUMING}


class Supervisor:
    """Runs the stages of ``args`` (the generator only with a rate above 0) until told to stop."""

    def __init__(self, args: argparse.Namespace, argv: list[str]) -> None:
        self.args = args
        self.names = [stage for stage in STAGES if stage != "generate" or args.rate > 0]
        self.argv = argv
        self.generate_until: float | None = None
        self.measure_since = 0.0  # epoch seconds: the orders produced since are measured
        self.stopping = threading.Event()
        self.interval, self.total, self.measured = Interval(), Interval(), telemetry.Latencies()
        self.results: dict[str, list[dict]] = {}  # stage -> what each of its processes returned

    def run(self) -> int:
        """Until stopped; returns the exit code."""
        try:
            metrics_port = settings.metrics_port()
            kafka = Kafka.from_env()
            stages.create_topics(kafka, self.names, self.args.workers)
        except (ConnectionError, ValueError) as exc:
            print(f"stream: {exc}", file=sys.stderr)
            return 1
        self.processes = self.stage_processes(metrics_port)
        self.started = time.monotonic()  # --seconds and the warm-up count from the stages' start
        with LagProbe(kafka, topology.INPUTS, quiet=True) as self.probe:
            return self.stream(kafka)

    def stream(self, kafka: Kafka) -> int:
        """The stages streaming until stopped, then the summary; returns the exit code."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: self.stopping.set())
        # The sink names its store itself ("sink product-metrics -> ..."): stream knows no store.
        say(f"streaming {', '.join(self.names)} on {kafka.config['bootstrap.servers']}; "
            f"a transaction every {self.args.commit_interval_ms:g} ms; Ctrl-C stops")
        host, children = settings.metrics_host(), self.processes.children.values()
        served = [f"{c.name} {serving.address(host, c.metrics_port)}" for c in children if c.metrics_port]
        if served:
            say(f"metrics (PIPELINE_METRICS_PORT): {', '.join(served)}")
        code = self.supervise()
        lags = self.lags()
        self.processes.stop()
        self.collect()
        summary = self.summary(lags)
        for line in render(summary):
            say(line)
        if self.args.summary:
            self.args.summary.parent.mkdir(parents=True, exist_ok=True)
            self.args.summary.write_text(json.dumps(summary, indent=2) + "\n")
        return code

    def stage_processes(self, metrics_port: int) -> StageProcesses:
        """The stages' processes, with the supervisor's arguments (the scalable stages as
        args.workers processes each), timed from now, once the topics are there: the generator's
        end, and the warm-up, after which the sink measures the orders produced (those of the
        warm-up wait on the start-up), each serving its metrics from ``metrics_port`` on."""
        now = time.time()
        self.measure_since = now + self.args.warmup_seconds
        extra = {"sink": ["--measure-since", repr(self.measure_since)]}
        if self.args.generate_seconds is not None:
            self.generate_until = now + self.args.generate_seconds
            extra["generate"] = ["--generate-until", repr(self.generate_until)]
        return StageProcesses(self.names, self.argv, extra, self.args.workers, metrics_port)

    def supervise(self) -> int:
        """Look after the stages until it is time to stop; returns the exit code."""
        status_at = time.monotonic() + self.args.status_seconds
        while not self.stopping.wait(0.2):
            self.collect()
            if (failed := self.processes.look_after()) is not None:
                return failed
            now = time.monotonic()
            if now >= status_at:
                status_at = now + self.args.status_seconds
                say(self.interval.status(self.names, self.lags()))
                self.interval = Interval()
            if self.generate_until is not None and self.hand_over():
                say("the generator has finished and every stage has drained")
                return 0
            if self.args.seconds is not None and now - self.started >= self.args.seconds:
                return 0
        return 0

    def collect(self) -> None:
        """Take in what the stages reported: committed batches, and the results of those that ended."""
        while (report := self.processes.next_report()) is not None:
            if isinstance(report, telemetry.Ended):
                self.results.setdefault(report.stage, []).append(report.result)
                say(f"{report.stage} finished")
                continue
            self.interval.add(report)
            self.total.add(report)
            self.measured.merge(report.latencies)

    def lags(self) -> dict[str, int]:
        """Each consuming stage's lag on its input; {} when it cannot be read."""
        try:
            per_topic = lag(*self.probe.offsets(timeout=10))
        except Exception as exc:  # a status line without lag beats a supervisor that dies
            log.warning("could not read the consumer lag: %s", exc)
            return {}
        return {stage: per_topic.get(topic, 0) for stage, topic in INPUT.items()}

    def hand_over(self) -> bool:
        """Tell the next stage to finish once the ones before it (the generator, told when to stop,
        first) have ended; True once every stage has."""
        ended = {stage for stage in self.names if self.ended(stage)}
        if (stage := to_finish(self.names, ended)) is not None:
            self.processes.finish(stage)
        return len(ended) == len(self.names)

    def ended(self, stage: str) -> bool:
        """Whether every process of ``stage`` has returned its result (one done, serving its
        metrics, stays up until the stream stops)."""
        return len(self.results.get(stage, [])) >= self.processes.count(stage)

    def summary(self, lags: dict[str, int]) -> dict:
        """What ``render`` prints and ``--summary`` writes."""
        return {
            "seconds": round(time.monotonic() - self.started, 1),
            "rate": self.args.rate,
            "commit_interval_ms": self.args.commit_interval_ms,
            "warmup_seconds": self.args.warmup_seconds,
            "measure_since": self.measure_since,
            "latency": self.measured.summary(),
            "lag_at_end": sum(lags.values()) if lags else None,
            "lag": lags,
            "stages": {
                stage: {
                    "read": self.total.read[stage], "written": self.total.written[stage],
                    "restarts": sum(c.restarts for c in self.processes.children.values() if c.stage == stage),
                }
                for stage in self.names
            },
            # A stage's processes' results as one (run_results combines a scalable stage's).
            "results": {
                stage: parts[0] if len(parts) == 1 else xcom(getattr(run_results({stage: parts}), stage))
                for stage, parts in self.results.items()
            },
        }


def to_finish(names: list[str], ended: set[str]) -> str | None:
    """The stage to tell to finish: the first of ``names`` (in pipeline order) that has not
    ended, every one before it having ended, its input so complete; None when all have, or
    when that is the generator (it ends at its own time)."""
    stage = next((stage for stage in names if stage not in ended), None)
    return None if stage == "generate" else stage
