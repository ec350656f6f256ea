"""Starting measured steps: each in a fresh process of its own (this package with --child), alone
or as workers started together; and a fresh broker's topics for them to run on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
from confluent_kafka.admin import NewTopic

from include.pipeline import settings
from scripts.bench.baselines import COPY_TOPIC
from scripts.bench.results import Step


def child_command(what: str, n: int, store: str, *options: str) -> list[str]:
    """The command line of a child measuring ``what`` over ``n`` orders with ``store``."""
    return [sys.executable, "-m", __package__, "--child", what, "--n", str(n), "--store", store, *options]


def step_of(output: str) -> Step:
    """The Step a child printed: the last line of its output."""
    return msgspec.json.decode(output.strip().splitlines()[-1], type=Step)


def measure(
    env: dict, what: str, n: int, store: str, profiles: Path | None = None,
    invalid_ratio: float | None = None,
) -> Step:
    """One step in a fresh process: its seconds, records and peak RSS (under cProfile, its top
    functions to ``profiles``/<what>.txt; generate: ``invalid_ratio`` of the orders invalid)."""
    options = ["--profile-to", str(profiles / f"{what}.txt")] if profiles else []
    if invalid_ratio is not None:
        options += ["--invalid-ratio", repr(invalid_ratio)]
    result = subprocess.run(
        child_command(what, n, store, *options), env=env, capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        sys.exit(f"bench: {what} failed:\n{result.stderr[-3000:]}")
    return step_of(result.stdout)


def measure_workers(env: dict, what: str, n: int, workers: int) -> Step:
    """``what`` as ``workers`` processes started together, each on its share of the partitions:
    from the first one's start to the last one's end, the records they read and wrote, and the
    largest peak RSS of one of them."""
    procs = [
        subprocess.Popen(
            child_command(what, n, "-", "--share", f"{i}/{workers}"),
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(workers)
    ]
    steps = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            sys.exit(f"bench: {what} as {workers} workers failed:\n{err[-3000:]}")
        steps.append(step_of(out))
    started, ended = min(s.started for s in steps), max(s.ended for s in steps)
    return Step(
        seconds=ended - started, records=sum(s.records for s in steps), written=sum(s.written for s in steps),
        peak_rss_mb=max(s.peak_rss_mb for s in steps), started=started, ended=ended,
    )


def fresh_topics(env: dict) -> None:
    """The pipeline's topics, and the consume -> produce baseline's, on a fresh broker."""
    from include.pipeline import stages
    from include.pipeline.kafka_io.client import Kafka

    kafka = Kafka({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]})
    stages.create_topics(kafka)
    admin = kafka.admin()  # held until the futures are done: its end would fail them
    for future in admin.create_topics([NewTopic(COPY_TOPIC, settings.partitions(), 1)]).values():
        future.result()
