"""Starting measured steps: each in a fresh process of its own (this package with --child), alone
or as workers started together, with the broker's CPU over each; and a fresh broker's topics for
them to run on."""

from __future__ import annotations

import os
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


def broker_cpu_seconds(env: dict) -> float:
    """The CPU seconds (user + sys) the local broker of ``env`` has used so far, all its nodes
    together: the Java processes scripts/kafka/broker started, whose pids it keeps in
    <KAFKA_DATA_DIR>/broker.pid (three nodes: node-<n>/broker.pid)."""
    data = Path(env["KAFKA_DATA_DIR"])
    ticks = 0
    for pid_file in (*data.glob("broker.pid"), *data.glob("node-*/broker.pid")):
        # /proc/<pid>/stat: utime and stime are fields 14 and 15, counted after the ")" ending the
        # command's name (which may hold spaces).
        stat = Path(f"/proc/{pid_file.read_text().strip()}/stat").read_text().rpartition(")")[2].split()
        ticks += int(stat[11]) + int(stat[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def measure(
    env: dict, what: str, n: int, store: str, profiles: Path | None = None,
    invalid_ratio: float | None = None,
) -> Step:
    """One step in a fresh process: its seconds, records, peak RSS and CPU, and the broker's CPU
    over it (under cProfile, its top functions to ``profiles``/<what>.txt; generate:
    ``invalid_ratio`` of the orders invalid)."""
    options = ["--profile-to", str(profiles / f"{what}.txt")] if profiles else []
    if invalid_ratio is not None:
        options += ["--invalid-ratio", repr(invalid_ratio)]
    broker_before = broker_cpu_seconds(env)
    result = subprocess.run(
        child_command(what, n, store, *options), env=env, capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        sys.exit(f"bench: {what} failed:\n{result.stderr[-3000:]}")
    step = step_of(result.stdout)
    step.broker_cpu_seconds = broker_cpu_seconds(env) - broker_before
    return step


def measure_workers(env: dict, what: str, n: int, workers: int) -> Step:
    """``what`` as ``workers`` processes started together, each on its share of the partitions,
    taken together (``together``), with the broker's CPU from before the first one started to the
    last one's end."""
    broker_before = broker_cpu_seconds(env)
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
    step = together(steps)
    step.broker_cpu_seconds = broker_cpu_seconds(env) - broker_before
    return step


def together(steps: list[Step]) -> Step:
    """Workers' steps as one: from the first one's start to the last one's end, the records they
    read and wrote and the CPU they used, all of them, and the largest peak RSS of one of them."""
    started, ended = min(s.started for s in steps), max(s.ended for s in steps)
    return Step(
        seconds=ended - started, records=sum(s.records for s in steps), written=sum(s.written for s in steps),
        peak_rss_mb=max(s.peak_rss_mb for s in steps), started=started, ended=ended,
        cpu_seconds=sum(s.cpu_seconds for s in steps),
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
