"""make bench: throughput and memory of each stage against client baselines, in one run.

Starts a throwaway local broker (scripts/kafka/broker on free ports, data in a temp dir), then:
  1. baselines with confluent-kafka (the stages' client): consume-only, and consume -> produce of
     the same bytes, over the same N orders;
  2. each stage alone (generate, process, analyze, sink) over N orders, transactions and
     read_committed on, in a fresh process so its peak RSS is its own; again at N/10;
  3. a whole kafka_pipeline run of N orders with `airflow dags test --use-executor` (the
     LocalExecutor, its task instances in parallel, and an API server for them): wall time, and
     how much of it is Airflow rather than the stages;
  4. scaling: process and analyze as 1, 2 and 3 workers (a process each, on their shares of the
     partitions, started together) over the same N orders on a fresh broker each (its JIT warmed
     by the same volume copied through it once), with the raw consume baseline of that broker
     and each worker's peak RSS at N and N/10; and the whole DAG run at 1 and 2 workers;
  5. sink_history: the sink applying one run's changes (1,000 window records) onto a metrics
     store that already holds 0, 100,000, 1,000,000 and 2,628,000 rows (a year; filled
     directly), on SQLite and on PostgreSQL (a throwaway server), in a fresh process each, with
     the Order metrics page's default range read at each size; and reconcile at the largest.
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
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import closing, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from include.pipeline import settings, topology  # noqa: E402
from include.pipeline.domain import catalogue  # noqa: E402
from scripts.kafka.local import free_port, throwaway_broker  # noqa: E402

START = datetime(2026, 1, 5, 9, tzinfo=timezone.utc)
END = datetime(2026, 1, 5, 10, tzinfo=timezone.utc)
STAGES = topology.names(topology.PIPELINE)
AIRFLOW = str(ROOT / "scripts/airflow")
COPY_TOPIC = "bench-copy"  # where the consume -> produce baseline writes
BASELINE_FOR = {"generate": None, "process": "consume_produce", "analyze": "consume", "sink": "consume"}


def child(what: str, n: int, store_url: str, profile: str | None, share: str | None = None) -> None:
    """Run one measured step in this (fresh) process (``share`` "i/n": as worker i of n); print
    {seconds, records, peak_rss_mb, started, ended} (the last two epoch seconds)."""
    from include.pipeline import stages
    from include.pipeline.kafka_io.client import Kafka
    from include.pipeline.store.metrics_store import MetricsStore

    kafka = Kafka.from_env()
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    index, workers = map(int, (share or "0/1").split("/"))
    started, started_at = time.perf_counter(), time.time()
    if what == "generate":
        records = stages.generate(kafka, n, START, END, invalid_ratio=0.0, seed=1).generated
    elif what == "process":
        records = stages.process(kafka, workers=workers, worker=index).read
    elif what == "analyze":
        records = stages.analyze(kafka, workers=workers, worker=index).read
    elif what == "sink":
        records = stages.sink(kafka, MetricsStore(store_url, "bench")).read
    elif what == "reconcile":
        records = reconcile_at(MetricsStore(store_url, "bench"))
    elif what == "page":
        from include.pipeline.view import dashboard

        records = len(dashboard.metrics(MetricsStore(store_url, "bench", read_only=True)).series[0].windows)
    else:
        records = baseline(kafka, what)
    seconds = time.perf_counter() - started
    if profiler:
        profiler.disable()
        with open(profile, "w") as file:
            pstats.Stats(profiler, stream=file).sort_stats("tottime").print_stats(25)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "records": records, "peak_rss_mb": round(peak_mb, 1),
                      "started": started_at, "ended": started_at + seconds}))


def baseline(kafka, what: str) -> int:
    """Raw bytes through the same client, settings, bounded read and transactions as the stages,
    no parsing."""
    from include.pipeline.kafka_io.reading import BoundedRead
    from include.pipeline.kafka_io.writing import produce_all

    group = f"bench-{what}"
    with closing(kafka.consumer(group)) as consumer:
        if what == "consume":
            return sum(len(batch) for batch in BoundedRead(consumer, settings.ORDERS, admin=kafka.admin()))
        txns = transactions(kafka, group)
        count = 0
        source = BoundedRead(consumer, settings.ORDERS, admin=kafka.admin())
        for batch in source:

            def send(producer) -> None:
                records = [(message.key(), message.value()) for message in batch]
                produce_all(producer, COPY_TOPIC, records, txns.ends)

            txns.run(send, consumer, source)
            count += len(batch)
        return count


def transactions(kafka, transactional_id: str):
    """The stages' unit of work (kafka_io.Transactions) on a producer of its own, made as theirs are."""
    from include.pipeline.kafka_io.writing import Transactions
    from include.pipeline.stages.producers import transactional_producer

    return Transactions(lambda: transactional_producer(kafka, transactional_id))


def reconcile_at(store) -> int:
    """What the reconcile task does after a sink: the sink's totals against the analyze ledger
    (here made equal to them; the stages' other counts are zero). Returns the rows covered."""
    from include.pipeline.domain.windows import Ledger
    from include.pipeline.run import reconcile
    from include.pipeline.run.results import AnalyzeResult, ProcessResult, RunResults, SinkResult

    totals = store.totals()
    ledger = Ledger(totals.order_count, totals.counted_revenue)
    results = RunResults(
        process=ProcessResult(), analyze=AnalyzeResult(ledger_before=ledger, ledger_after=ledger),
        sink=SinkResult(
            metrics=totals.rows, order_count=totals.order_count, total_revenue=totals.total_revenue,
            counted_revenue=totals.counted_revenue,
            store=store.name,
        ),
    )
    reconcile.reconcile("bench", results)
    return totals.rows


def measure(env: dict, what: str, n: int, store: str, profiles: Path | None = None) -> dict:
    """One step in a fresh process (this script with --child): its seconds, records and peak RSS."""
    profile = ["--profile-to", str(profiles / f"{what}.txt")] if profiles else []
    result = subprocess.run(
        [sys.executable, __file__, "--child", what, "--n", str(n), "--store", store, *profile],
        env=env, capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        sys.exit(f"bench: {what} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure_workers(env: dict, what: str, n: int, workers: int) -> dict:
    """``what`` as ``workers`` processes started together, each on its share of the partitions:
    the seconds from the first one's start to the last one's end, the records they read, and the
    largest peak RSS of one of them."""
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--child", what, "--n", str(n), "--store", "-",
             "--share", f"{i}/{workers}"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(workers)
    ]
    steps = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            sys.exit(f"bench: {what} as {workers} workers failed:\n{err[-3000:]}")
        steps.append(json.loads(out.strip().splitlines()[-1]))
    return {
        "seconds": max(s["ended"] for s in steps) - min(s["started"] for s in steps),
        "records": sum(s["records"] for s in steps),
        "peak_rss_mb": max(s["peak_rss_mb"] for s in steps),
    }


def fresh_topics(env: dict) -> None:
    """The pipeline's topics on a fresh broker, and the cluster warmed up: it creates its
    transaction and consumer-offset topics on first use (about a second), a one-time cost of the
    cluster, paid here rather than by whichever step is first."""
    from include.pipeline import stages
    from include.pipeline.kafka_io.client import TIMEOUT, Kafka
    from include.pipeline.kafka_io.errors import retrying

    kafka = Kafka({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]})
    stages.create_topics(kafka)
    admin = kafka.admin()
    for future in admin.create_topics([NewTopic(COPY_TOPIC, settings.partitions(), 1)]).values():
        future.result()
    kafka.producer(transactional_id="bench-warm-up").init_transactions(TIMEOUT)
    consumer = kafka.consumer("bench-warm-up")
    retrying(consumer.committed, [TopicPartition(settings.ORDERS, 0)], timeout=TIMEOUT)
    consumer.close()


SCALING_WORKERS = (1, 2, 3)
DAG_RUN_WORKERS = (1, 2)  # the whole DAG run: one worker, and the 2 of this 2-core machine


def scaling(env: dict, work: Path, n: int) -> dict:
    """process and analyze as 1, 2 and 3 workers over the same n orders (generated with one seed),
    each count on a fresh broker, warmed; the raw consume baseline of the same broker; the peak RSS of
    one worker at n and n/10 (2 workers)."""
    report: dict = {"process": {}, "analyze": {}, "consume_baseline_orders_per_s": {}}
    for workers in SCALING_WORKERS:
        with throwaway_broker(work / f"kafka-w{workers}", env) as kafka_env:
            fresh_topics(kafka_env)
            measure(kafka_env, "generate", n, "-")
            # A running cluster's JIT has compiled its produce, fetch and transaction paths; a fresh
            # one compiles them during the first stage measured (a third of the broker's CPU in
            # a 400,000-order run): the same work through it once, first.
            measure(kafka_env, "consume_produce", n, "-")
            consume = measure(kafka_env, "consume", n, "-")
            report["consume_baseline_orders_per_s"][str(workers)] = round(rate(consume, n))
            for stage in ("process", "analyze"):
                step = measure_workers(kafka_env, stage, n, workers)
                assert step["records"] == n, (stage, workers, step)
                report[stage][str(workers)] = {
                    "orders_per_s": round(rate(step, n)), "seconds": round(step["seconds"], 2),
                    "peak_rss_mb_per_worker": step["peak_rss_mb"],
                }
    with throwaway_broker(work / "kafka-w2-small", env) as kafka_env:
        fresh_topics(kafka_env)
        measure(kafka_env, "generate", n // 10, "-")
        for stage in ("process", "analyze"):
            report[stage]["2"]["peak_rss_mb_per_worker_small"] = measure_workers(
                kafka_env, stage, n // 10, 2,
            )["peak_rss_mb"]
    return report


def run_series(
    env: dict, n: int, work: Path, with_baselines: bool, profiles: Path | None = None,
) -> tuple[dict, dict]:
    """Fresh topics (a fresh broker), then the baselines and the stages over n orders."""
    fresh_topics(env)
    store = f"sqlite:///{work / f'metrics-{n}.db'}"
    results = {"generate": measure(env, "generate", n, store, profiles)}
    baselines = {}
    if with_baselines:
        baselines = {what: measure(env, what, n, store) for what in ("consume", "consume_produce")}
    for stage in STAGES[1:]:
        results[stage] = measure(env, stage, n, store, profiles)
    return results, baselines


HISTORY_SIZES = (0, 100_000, 1_000_000, 2_628_000)  # the last: a year of minutes, 5 products
HISTORY_REPEATS = 3
RUN_WINDOWS = 200  # one run's changes: 200 windows x 5 products = 1,000 records
NOW = int(END.timestamp())  # history ends here; the run updates its last 100 windows and adds 100


def sink_history(env: dict, work: Path, sizes: tuple[int, ...] = HISTORY_SIZES) -> dict:
    """The sink's seconds and peak RSS over stores of HISTORY_SIZES rows, on both engines."""
    from include.pipeline import stages
    from include.pipeline.kafka_io.client import Kafka
    from scripts.postgres.local import PASSWORD, throwaway_postgres

    report: dict = {"reconcile_seconds": {}}
    with throwaway_broker(work / "kafka-history", env) as kafka_env, throwaway_postgres() as postgres:
        kafka = Kafka({"bootstrap.servers": kafka_env["KAFKA_BOOTSTRAP_SERVERS"]})
        stages.create_topics(kafka)
        for engine in ("sqlite", "postgresql"):
            report[engine] = {}
            for size in sizes:
                if engine == "sqlite":
                    url = f"sqlite:///{work / f'history-{size}.db'}"
                else:
                    with postgres.connect() as admin:
                        admin.execute(f"CREATE DATABASE history_{size} OWNER metrics")
                    url = (
                        f"postgresql+psycopg://metrics:{PASSWORD}@127.0.0.1:{postgres.port}/history_{size}"
                    )
                fill(kafka, url, size)
                run_env = {**kafka_env, "PIPELINE_OUTPUT_DIR": str(work / f"output-{engine}-{size}")}
                steps = []
                # The median of a few: one run is at the mercy of the machine.
                for _ in range(HISTORY_REPEATS):
                    publish_run(kafka)
                    step = measure(run_env, "sink", RUN_WINDOWS * 5, url)
                    if step["records"] != RUN_WINDOWS * 5:
                        sys.exit(f"bench: the sink read {step['records']} records, not {RUN_WINDOWS * 5}")
                    steps.append(step)
                step = {key: statistics.median(s[key] for s in steps) for key in ("seconds", "peak_rss_mb")}
                page = [measure(run_env, "page", 0, url) for _ in range(HISTORY_REPEATS)]
                if page[0]["records"] != 180:
                    sys.exit(f"bench: the page's default range held {page[0]['records']} windows, not 180")
                page_seconds = statistics.median(p["seconds"] for p in page)
                report[engine][str(size)] = {
                    "seconds": round(step["seconds"], 3), "peak_rss_mb": step["peak_rss_mb"],
                    "page_seconds": round(page_seconds, 3),
                }
                print(f"sink_history {engine} {size:>9,} rows: {step['seconds']:.3f} s, "
                      f"{step['peak_rss_mb']} MB; page (metrics, default range) {page_seconds:.3f} s",
                      flush=True)
            report["reconcile_seconds"][engine] = round(measure(run_env, "reconcile", 0, url)["seconds"], 3)
    return report


def fill(kafka, url: str, size: int) -> None:
    """``size`` rows of 1-minute windows of the 5 products, ending at NOW, written with the
    database's own bulk path; the store's totals, cluster and offsets (the topic's end) to match."""
    from decimal import Decimal

    from include.pipeline.store import changes as store_changes
    from include.pipeline.store.metrics_store import MetricsStore

    store = MetricsStore(url, "bench")
    cluster = kafka.cluster_id()
    store.open(cluster)
    updated = datetime.now(timezone.utc)
    rows = (
        (start, start + 60, product_id, name, 3, "30.00", "10.00", updated)
        # Oldest first: in key order, each engine appends to its index instead of splitting pages.
        for start in range(NOW - 60 * (size // len(catalogue.PRODUCTS)), NOW, 60)
        for product_id, name in catalogue.PRODUCTS.items()
    )
    columns = (
        "window_start, window_end, product_id, product_name, order_count, total_revenue, avg_order_value, "
        "updated_at"
    )
    bulk_insert(store, columns, rows)
    ends = metrics_topic_ends(kafka)
    with store.transaction(cluster) as txn:
        txn.totals = store_changes.Totals(size, 3 * size, Decimal(30 * size))
        txn.set_offsets(settings.METRICS, ends)


def bulk_insert(store, columns: str, rows) -> None:
    """``rows`` into product_metrics in one transaction, by the database's own bulk path."""
    raw = store.engine.raw_connection()
    try:
        if store.engine.dialect.name == "sqlite":
            raw.execute("BEGIN")  # the store's connections autocommit: one transaction, not one per row
            raw.executemany(f"INSERT INTO product_metrics ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        else:
            with raw.cursor() as cursor, cursor.copy(f"COPY product_metrics ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        raw.commit()
    finally:
        raw.close()
    if store.engine.dialect.name != "sqlite":
        # What autovacuum has long done to a table that grew over months: statistics, visibility
        # map, hint bits (else the first reads after a bulk load pay for them).
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE product_metrics")


def metrics_topic_ends(kafka) -> dict[int, int]:
    """The end offset of each partition of product-metrics, once the new topic has its leaders."""
    with closing(kafka.consumer("bench-history")) as consumer:
        for _ in range(60):
            try:
                return {
                    p: consumer.get_watermark_offsets(TopicPartition(settings.METRICS, p), timeout=30)[1]
                    for p in range(settings.partitions())
                }
            except KafkaException:
                time.sleep(0.5)
    sys.exit("bench: product-metrics has no leaders after 30 s")


def publish_run(kafka) -> None:
    """One run's changes on product-metrics: the newest 100 windows again, and 100 new ones."""
    from decimal import Decimal

    from include.pipeline.domain import codec
    from include.pipeline.domain.windows import Partial, partial_key_bytes
    from include.pipeline.kafka_io.writing import produce_all

    keys = [
        (start, product_id)
        for start in range(NOW - 60 * (RUN_WINDOWS // 2), NOW + 60 * (RUN_WINDOWS // 2), 60)
        for product_id in catalogue.PRODUCTS
    ]
    records = [
        (partial_key_bytes((*key, 0)), codec.encode(Partial(*key, 0, 4, Decimal("41.00")))) for key in keys
    ]
    transactions(kafka, "bench-history").run(
        lambda producer: produce_all(producer, settings.METRICS, records)
    )


def rate(step: dict, n: int) -> float:
    """Orders through the step per second (the sink reads window records, not orders)."""
    return n / step["seconds"]


def arguments() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="orders (default 1,000,000)")
    parser.add_argument("--child")
    parser.add_argument("--store", help="(child) the metrics store's URL")
    parser.add_argument("--share", help="(child) as worker i of n: i/n")
    parser.add_argument("--scaling-only", action="store_true", help="only the scaling part")
    parser.add_argument("--skip-dag", action="store_true", help="leave out the whole-DAG run")
    parser.add_argument("--sink-history-only", action="store_true", help="only the sink_history part")
    parser.add_argument(
        "--history-sizes", default=",".join(map(str, HISTORY_SIZES)),
        help="store sizes (rows) for sink_history, comma-separated; the last also times reconcile",
    )
    parser.add_argument(
        "--profile", action="store_true",
        help="instead: run each stage once under cProfile and write its top functions to output/profiles/",
    )
    parser.add_argument("--profile-to")
    args = parser.parse_args()
    if not args.child and args.n < 10:
        parser.error("--n must be at least 10")
    return args


def main() -> int:
    """Run the benchmark (all of it, the sink_history part alone, or the stages under cProfile)
    and write its report; with --child, one measured step of it."""
    args = arguments()
    if args.child:
        child(args.child, args.n, args.store, args.profile_to, args.share)
        return 0
    n, small = args.n, args.n // 10
    sizes = tuple(int(size) for size in args.history_sizes.split(","))
    with tempfile.TemporaryDirectory(prefix="kafka-bench-") as tmp:
        work = Path(tmp)
        env = {
            **os.environ, "PYTHONPATH": str(ROOT), "PIPELINE_OUTPUT_DIR": str(work / "output"),
            "KAFKA_HEAP": "1g",
        }
        env.pop("AIRFLOW_CONN_KAFKA_DEFAULT", None)
        if args.profile:
            profile(env, n, work)
            return 0
        if args.sink_history_only:
            report = {"sink_history": sink_history(env, work, sizes)}
            write(report, render_history(report["sink_history"], sizes))
            return 0
        if args.scaling_only:
            report = {"n": n, "scaling": scaling(env, work, n)}
            if not args.skip_dag:
                report["scaling"]["dag_run_seconds"] = dag_run_seconds(dag_runs(env, work, n))
            write(report, render_scaling(report["scaling"]))
            return 0
        with throwaway_broker(work / "kafka-n", env) as kafka_env:
            big, baselines = run_series(kafka_env, n, work, with_baselines=True)
        with throwaway_broker(work / "kafka-small", env) as kafka_env:
            smaller, _ = run_series(kafka_env, small, work, with_baselines=False)
        report = stage_report(n, big, smaller, baselines)
        report["scaling"] = scaling(env, work, n)
        if not args.skip_dag:
            runs = dag_runs(env, work, n)
            report.update(runs[1])
            report["scaling"]["dag_run_seconds"] = dag_run_seconds(runs)
        report["sink_history"] = sink_history(env, work, sizes)
    write(report, "\n\n".join([
        render(report), render_scaling(report["scaling"]), render_history(report["sink_history"], sizes),
    ]))
    return 0


def profile(env: dict, n: int, work: Path) -> None:
    """Each stage once under cProfile; its top functions to output/profiles/<stage>.txt."""
    profiles = settings.output_dir() / "profiles"
    profiles.mkdir(parents=True, exist_ok=True)
    with throwaway_broker(work / "kafka-profile", env) as kafka_env:
        run_series(kafka_env, n, work, with_baselines=False, profiles=profiles)
    for stage in STAGES:
        print(f"{profiles / stage}.txt")


def stage_report(n: int, big: dict, smaller: dict, baselines: dict) -> dict:
    """The report's baselines and stages: rates, ratios to their baseline, peak memory at N and N/10."""
    report: dict = {"n": n}
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
    return report


def dag_runs(env: dict, work: Path, n: int) -> dict[int, dict]:
    """The whole DAG run at 1 and 2 workers (``dag_run``), by workers."""
    return {workers: dag_run(env, work, n, workers) for workers in DAG_RUN_WORKERS}


def dag_run_seconds(runs: dict[int, dict]) -> dict[str, float]:
    """The scaling part's ``dag_run_seconds``: workers -> the run's seconds."""
    return {str(workers): run["dag_seconds"] for workers, run in runs.items()}


def dag_run(env: dict, work: Path, n: int, workers: int = 1) -> dict:
    """A whole kafka_pipeline run of ``n`` orders with ``workers`` (airflow dags test, its tasks on
    the LocalExecutor, so mapped instances run side by side as under a scheduler): its seconds,
    the stages' share of them, and Airflow's. Its whole output goes to
    output/bench-dag-run-<workers>.log."""
    # Its own Airflow and its own store: a store holds one cluster's metrics, and each run has a broker.
    home = {
        **env, "AIRFLOW_HOME": str(work / f"airflow-{workers}"),
        "PIPELINE_OUTPUT_DIR": str(work / f"output-dag-{workers}"),
    }
    broker = throwaway_broker(work / f"kafka-dag-{workers}", home)
    with broker as kafka_env, api_server(kafka_env) as airflow_env:
        started = time.perf_counter()
        result = subprocess.run(
            [AIRFLOW, "dags", "test", "kafka_pipeline", "2026-01-05T10:00:00+00:00", "--use-executor",
             "--conf", json.dumps({"orders": n, "invalid_ratio": 0.0, "seed": 1, "workers": workers})],
            env=airflow_env, capture_output=True, text=True,
        )
        dag_seconds = time.perf_counter() - started
    output = result.stdout + result.stderr
    log = settings.output_dir() / f"bench-dag-run-{workers}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(output)
    if result.returncode != 0 or "state=success" not in output:
        sys.exit(f"bench: the DAG run at {workers} workers failed (all of its output in {log}):\n"
                 + output[-3000:])
    # Each stage logs "<what>: <count> in <seconds>s" (progress.Progress.done); the rest is Airflow.
    # A mapped stage's instances run side by side: the stage takes as long as its slowest.
    slowest: dict[str, float] = {}
    for seconds, task in re.findall(r": \d+ in ([0-9.]+)s \(.* task_id=(\w+)", output):
        slowest[task] = max(slowest.get(task, 0.0), float(seconds))
    stage_seconds = sum(slowest.values())
    return {
        "dag_seconds": round(dag_seconds, 1), "dag_stage_seconds": round(stage_seconds, 1),
        "dag_airflow_overhead_seconds": round(dag_seconds - stage_seconds, 1),
    }


@contextmanager
def api_server(env: dict) -> Iterator[dict]:
    """`scripts/airflow api-server` on free ports, whose execution API an executor's task
    processes call; yields ``env`` pointing at it."""
    env = {**env, "AIRFLOW__API__PORT": str(free_port(713, 714))}  # and its two log servers'
    # Migrates the metadata DB and writes airflow.cfg with its secrets (the JWT key the executor
    # signs with and the server checks) once, before the two processes read them.
    subprocess.run([AIRFLOW, "config", "get-value", "core", "executor"], env=env, check=True,
                   capture_output=True)
    home = Path(env["AIRFLOW_HOME"])
    with (home / "api-server.log").open("wb") as log:
        server = subprocess.Popen([AIRFLOW, "api-server"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        health = f"http://127.0.0.1:{env['AIRFLOW__API__PORT']}/api/v2/monitor/health"
        deadline = time.monotonic() + 180
        while not answers(health):
            if server.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"bench: the API server did not start; its log: {home / 'api-server.log'}")
            time.sleep(1)
        yield env
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def answers(url: str) -> bool:
    """Whether ``url`` answers with a success."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def write(report: dict, text: str) -> None:
    """Write the report to bench.json in the output directory and print the table."""
    out = settings.output_dir() / "bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(text)
    print(f"\nwritten to {out}")


def render_history(history: dict, sizes: tuple[int, ...]) -> str:
    """The sink_history table: the sink's seconds and peak RSS at each store size, the largest
    against the empty one, then the page's and reconcile's seconds."""
    big, empty = str(sizes[-1]), str(sizes[0])
    lines = ["sink applying 1,000 window records onto a store of N rows (target at the largest: "
             "<= 1.5x the seconds, <= 1.2x the peak RSS of the empty store)",
             f"{'engine':<12}" + "".join(f"{f'{size:,} rows':>22}" for size in sizes)
             + f"{'x seconds':>11}{'x RSS':>8}"]
    for engine in ("sqlite", "postgresql"):
        row = history[engine]
        cells = "".join(
            f"{row[str(size)]['seconds']:>10.3f} s {row[str(size)]['peak_rss_mb']:>6} MB" for size in sizes
        )
        lines.append(f"{engine:<12}{cells}{row[big]['seconds'] / row[empty]['seconds']:>11.2f}"
                     f"{row[big]['peak_rss_mb'] / row[empty]['peak_rss_mb']:>8.2f}")
    for engine in ("sqlite", "postgresql"):
        page = ", ".join(
            f"{size:,} rows {history[engine][str(size)]['page_seconds']:.3f} s" for size in sizes
        )
        lines.append(f"Order metrics page, the default 3 hours of metrics, {engine}: {page}")
    lines.append(f"reconcile at {sizes[-1]:,} rows: "
                 + ", ".join(f"{e} {s:.3f} s" for e, s in history["reconcile_seconds"].items()))
    return "\n".join(lines)


def render(report: dict) -> str:
    """The main table: orders per second and peak RSS of the baselines and each stage (at N and
    N/10), each stage's ratio to its baseline, then the task and whole-DAG times."""
    n = report["n"]
    lines = [f"N = {n:,} orders ({os.cpu_count()} cores)", "",
             f"{'step':<22}{'orders/s':>12}{'ratio':>8}{'peak MB':>10}{'peak MB N/10':>14}"]
    for what, row in report["baseline"].items():
        lines.append(f"{'baseline ' + what:<22}{row['orders_per_s']:>12,}"
                     f"{'':>8}{row['peak_rss_mb']:>10}{'':>14}")
    for stage, row in report["stages"].items():
        ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else "-"
        lines.append(f"{stage:<22}{row['orders_per_s']:>12,}{ratio:>8}"
                     f"{row['peak_rss_mb']:>10}{row['peak_rss_mb_small']:>14}")
    lines.append("")
    lines.append(f"process + analyze + sink task time: {report['stage_seconds_process_analyze_sink']} s")
    if "dag_seconds" in report:
        lines.append(
            f"whole DAG run (dags test on the LocalExecutor): {report['dag_seconds']} s, of which stages "
            f"{report['dag_stage_seconds']} s and Airflow {report['dag_airflow_overhead_seconds']} s"
        )
    return "\n".join(lines)


def render_scaling(scaling: dict) -> str:
    """process and analyze per number of workers: orders/s, speed-up over one, peak MB a worker."""
    lines = [f"{'workers':<10}{'stage':<10}{'orders/s':>12}{'x one':>8}{'peak MB/worker':>16}"
             f"{'consume baseline':>18}"]
    for stage in ("process", "analyze"):
        one = scaling[stage]["1"]["orders_per_s"]
        for workers, row in scaling[stage].items():
            speed_up = row["orders_per_s"] / one
            baseline = scaling["consume_baseline_orders_per_s"][workers]
            lines.append(f"{workers:<10}{stage:<10}{row['orders_per_s']:>12,}{speed_up:>8.2f}"
                         f"{row['peak_rss_mb_per_worker']:>16}{baseline:>18,}")
    for stage in ("process", "analyze"):
        small = scaling[stage]["2"]["peak_rss_mb_per_worker_small"]
        lines.append(f"{stage}, 2 workers, peak MB a worker at N/10: {small}")
    if "dag_run_seconds" in scaling:
        runs = scaling["dag_run_seconds"].items()
        lines.append("whole DAG run (dags test on the LocalExecutor): "
                     + ", ".join(f"{w} worker(s) {s} s" for w, s in runs))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
