"""make bench: throughput and memory of each stage against client baselines, in one run.

Starts a throwaway local broker (scripts/kafka/broker on free ports, data in a temp dir), then:
  1. baselines with confluent-kafka (the stages' client): consume-only, and consume -> produce of
     the same bytes, over the same N orders;
  2. each stage alone (generate, process, analyze, sink) over N orders, transactions and
     read_committed on, in a fresh process so its peak RSS is its own; again at N/10;
  3. a whole kafka_pipeline run of N orders with `airflow dags test`: wall time, and how much of
     it is Airflow rather than the stages.
Prints a table and writes output/bench.json.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import re
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from include.pipeline import settings  # noqa: E402
from scripts.kafka.local import throwaway_broker  # noqa: E402

START = datetime(2026, 1, 5, 9, tzinfo=timezone.utc)
END = datetime(2026, 1, 5, 10, tzinfo=timezone.utc)
STAGES = ("generate", "process", "analyze", "sink")
COPY_TOPIC = "bench-copy"  # where the consume -> produce baseline writes
BASELINE_FOR = {"generate": None, "process": "consume_produce", "analyze": "consume", "sink": "consume"}


def child(what: str, n: int, out: str, profile: str | None) -> None:
    """Run one measured step in this (fresh) process; print {seconds, records, peak_rss_mb}."""
    from include.pipeline import stages
    from include.pipeline.kafka_io import Kafka

    kafka = Kafka.from_env()
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    started = time.perf_counter()
    if what == "generate":
        result = stages.generate(kafka, n, START, END, invalid_ratio=0.0, seed=1)
        records = result["generated"]
    elif what == "process":
        records = stages.process(kafka)["read"]
    elif what == "analyze":
        records = stages.analyze(kafka)["read"]
    elif what == "sink":
        records = stages.sink(kafka, Path(out))["read"]
    else:
        records = baseline(kafka, what)
    seconds = time.perf_counter() - started
    if profiler:
        profiler.disable()
        with open(profile, "w") as file:
            pstats.Stats(profiler, stream=file).sort_stats("tottime").print_stats(25)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "records": records, "peak_rss_mb": round(peak_mb, 1)}))


def baseline(kafka, what: str) -> int:
    """Raw bytes through the same client, settings and bounded read as the stages, no parsing."""
    from contextlib import closing

    from include.pipeline.kafka_io import BoundedRead, produce, transaction

    group = f"bench-{what}"
    with closing(kafka.consumer(group)) as consumer:
        if what == "consume":
            return sum(len(batch) for batch in BoundedRead(consumer, settings.ORDERS))
        producer = kafka.producer(transactional_id=group)
        producer.init_transactions(30)
        count = 0
        source = BoundedRead(consumer, settings.ORDERS)
        for batch in source:
            with transaction(producer, consumer, source):
                for message in batch:
                    produce(producer, COPY_TOPIC, message.key(), message.value())
            count += len(batch)
        return count


def measure(env: dict, what: str, n: int, out: Path, profiles: Path | None = None) -> dict:
    profile = ["--profile-to", str(profiles / f"{what}.txt")] if profiles else []
    result = subprocess.run(
        [sys.executable, __file__, "--child", what, "--n", str(n), "--out", str(out), *profile],
        env=env, capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        sys.exit(f"bench: {what} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_series(env: dict, n: int, work: Path, with_baselines: bool, profiles: Path | None = None) -> tuple[dict, dict]:
    """Fresh topics (a fresh broker), then the baselines and the stages over n orders."""
    from include.pipeline import stages
    from include.pipeline.kafka_io import TIMEOUT, Kafka, retrying

    kafka = Kafka({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]})
    stages.create_topics(kafka)
    admin = kafka.admin()
    for future in admin.create_topics([NewTopic(COPY_TOPIC, settings.PARTITIONS, 1)]).values():
        future.result()
    # A fresh cluster creates its transaction and consumer-offset topics on first use (about a
    # second): a one-time cost of the cluster, paid here rather than by whichever step is first.
    kafka.producer(transactional_id="bench-warm-up").init_transactions(TIMEOUT)
    consumer = kafka.consumer("bench-warm-up")
    retrying(consumer.committed, [TopicPartition(settings.ORDERS, 0)], timeout=TIMEOUT)
    consumer.close()
    results = {"generate": measure(env, "generate", n, work / "metrics.json", profiles)}
    baselines = {}
    if with_baselines:
        baselines = {what: measure(env, what, n, work / "metrics.json") for what in ("consume", "consume_produce")}
    for stage in STAGES[1:]:
        results[stage] = measure(env, stage, n, work / "metrics.json", profiles)
    return results, baselines


def rate(step: dict, n: int) -> float:
    """Orders through the step per second (the sink reads window records, not orders)."""
    return n / step["seconds"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="orders (default 1,000,000)")
    parser.add_argument("--child")
    parser.add_argument("--out")
    parser.add_argument("--skip-dag", action="store_true", help="leave out the whole-DAG run")
    parser.add_argument(
        "--profile", action="store_true",
        help="instead: run each stage once under cProfile and write its top functions to output/profiles/",
    )
    parser.add_argument("--profile-to")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.n, args.out, args.profile_to)
        return 0
    if args.n < 10:
        parser.error("--n must be at least 10")

    n, small = args.n, args.n // 10
    report: dict = {"n": n}
    with tempfile.TemporaryDirectory(prefix="kafka-bench-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PIPELINE_OUTPUT_DIR": str(work / "output"), "KAFKA_HEAP": "1g"}
        env.pop("AIRFLOW_CONN_KAFKA_DEFAULT", None)

        if args.profile:
            profiles = settings.output_dir() / "profiles"
            profiles.mkdir(parents=True, exist_ok=True)
            with throwaway_broker(work / "kafka-profile", env) as kafka_env:
                run_series(kafka_env, n, work, with_baselines=False, profiles=profiles)
            for stage in STAGES:
                print(f"{profiles / stage}.txt")
            return 0

        with throwaway_broker(work / "kafka-n", env) as kafka_env:
            big, baselines = run_series(kafka_env, n, work, with_baselines=True)
        with throwaway_broker(work / "kafka-small", env) as kafka_env:
            smaller, _ = run_series(kafka_env, small, work, with_baselines=False)

        report["baseline"] = {
            what: {"orders_per_s": round(rate(step, n)), "peak_rss_mb": step["peak_rss_mb"]}
            for what, step in baselines.items()
        }
        report["stages"] = {}
        for stage in STAGES:
            step = big[stage]
            base = BASELINE_FOR[stage]
            report["stages"][stage] = {
                "orders_per_s": round(rate(step, n)),
                "records_read": step["records"],
                "seconds": round(step["seconds"], 2),
                "ratio": round(rate(step, n) / report["baseline"][base]["orders_per_s"], 2) if base else None,
                "peak_rss_mb": step["peak_rss_mb"],
                "peak_rss_mb_small": smaller[stage]["peak_rss_mb"],
            }
        report["stage_seconds_process_analyze_sink"] = round(sum(big[s]["seconds"] for s in STAGES[1:]), 2)

        if not args.skip_dag:
            with throwaway_broker(work / "kafka-dag", {**env, "AIRFLOW_HOME": str(work / "airflow")}) as kafka_env:
                started = time.perf_counter()
                result = subprocess.run(
                    [str(ROOT / "scripts/airflow"), "dags", "test", "kafka_pipeline", "2026-01-05T10:00:00+00:00",
                     "--conf", json.dumps({"orders": n, "invalid_ratio": 0.0, "seed": 1})],
                    env=kafka_env, capture_output=True, text=True,
                )
                dag_seconds = time.perf_counter() - started
            if result.returncode != 0 or "state=success" not in result.stdout + result.stderr:
                sys.exit("bench: the DAG run failed:\n" + (result.stdout + result.stderr)[-3000:])
            # Each stage logs "<what>: <count> in <seconds>s"; the rest of the wall time is Airflow.
            stage_seconds = sum(float(s) for s in re.findall(r": \d+ in ([0-9.]+)s \(", result.stdout + result.stderr))
            report["dag_seconds"] = round(dag_seconds, 1)
            report["dag_stage_seconds"] = round(stage_seconds, 1)
            report["dag_airflow_overhead_seconds"] = round(dag_seconds - stage_seconds, 1)

    out = settings.output_dir() / "bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(render(report))
    print(f"\nwritten to {out}")
    return 0


def render(report: dict) -> str:
    n = report["n"]
    lines = [f"N = {n:,} orders ({os.cpu_count()} cores)", "",
             f"{'step':<22}{'orders/s':>12}{'ratio':>8}{'peak MB':>10}{'peak MB N/10':>14}"]
    for what, row in report["baseline"].items():
        lines.append(f"{'baseline ' + what:<22}{row['orders_per_s']:>12,}{'':>8}{row['peak_rss_mb']:>10}{'':>14}")
    for stage, row in report["stages"].items():
        ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else "-"
        lines.append(f"{stage:<22}{row['orders_per_s']:>12,}{ratio:>8}{row['peak_rss_mb']:>10}{row['peak_rss_mb_small']:>14}")
    lines.append("")
    lines.append(f"process + analyze + sink task time: {report['stage_seconds_process_analyze_sink']} s")
    if "dag_seconds" in report:
        lines.append(
            f"whole DAG run (dags test): {report['dag_seconds']} s, of which stages {report['dag_stage_seconds']} s "
            f"and Airflow {report['dag_airflow_overhead_seconds']} s"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
