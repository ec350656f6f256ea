"""sink_history: the sink applying one run's changes (1,000 window records) onto a metrics store
that already holds some rows (filled directly), on SQLite and on PostgreSQL (a throwaway
server), in a fresh process each, with the Order metrics page's default range read at each size;
and reconcile at the largest."""

from __future__ import annotations

import sys
import time
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

from confluent_kafka import KafkaException, TopicPartition

from include.pipeline import settings
from include.pipeline.domain import catalogue
from scripts.bench.baselines import transactions
from scripts.bench.child import END
from scripts.bench.measure import measure
from scripts.bench.results import ENGINES, Figure, HistoryRow, SinkHistory
from scripts.bench.warm_up import warmed_broker

HISTORY_SIZES = (0, 100_000, 1_000_000, 2_628_000)  # the last: a year of minutes, 5 products
RUN_WINDOWS = 200  # one run's changes: 200 windows x 5 products = 1,000 records
NOW = int(END.timestamp())  # history ends here; the run updates its last 100 windows and adds 100
PAGE_WINDOWS = 180  # the page's default range: 3 hours of 1-minute windows


def sink_history(env: dict, work: Path, sizes: tuple[int, ...], repeats: int) -> SinkHistory:
    """The sink's seconds and peak RSS over stores of ``sizes`` rows, on both engines, each the
    median of ``repeats`` runs on the same store (the part runs once: its store sizes, not its
    repetitions, are what take long)."""
    from include.pipeline import stages
    from include.pipeline.kafka_io.client import Kafka
    from scripts.postgres.local import PASSWORD, throwaway_postgres

    report = SinkHistory()
    # Warmed with as many records as its timed sinks read.
    warm = RUN_WINDOWS * len(catalogue.PRODUCTS) * repeats * len(sizes) * len(ENGINES)
    with warmed_broker(work / "kafka-history", env, warm) as kafka_env, throwaway_postgres() as postgres:
        kafka = Kafka({"bootstrap.servers": kafka_env["KAFKA_BOOTSTRAP_SERVERS"]})
        stages.create_topics(kafka)
        for engine in ENGINES:
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
                row = report.engine(engine)[size] = at_size(kafka, run_env, url, repeats)
                print(f"sink_history {engine} {size:>9,} rows: {row.seconds.median:.3f} s, "
                      f"{row.peak_rss_mb.median} MB; page (metrics, default range) "
                      f"{row.page_seconds.median:.3f} s", flush=True)
            report.reconcile_seconds[engine] = round(measure(run_env, "reconcile", 0, url).seconds, 3)
    return report


def at_size(kafka, env: dict, url: str, repeats: int) -> HistoryRow:
    """The sink of one run's changes onto the filled store at ``url``, and the page's read:
    ``repeats`` times each (one run is at the mercy of the machine)."""
    steps = []
    for _ in range(repeats):
        publish_run(kafka)
        step = measure(env, "sink", RUN_WINDOWS * 5, url)
        if step.records != RUN_WINDOWS * 5:
            sys.exit(f"bench: the sink read {step.records} records, not {RUN_WINDOWS * 5}")
        steps.append(step)
    page = [measure(env, "page", 0, url) for _ in range(repeats)]
    if page[0].records != PAGE_WINDOWS:
        sys.exit(f"bench: the page's default range held {page[0].records} windows, not {PAGE_WINDOWS}")
    return HistoryRow(
        seconds=Figure.of((s.seconds for s in steps), 3),
        peak_rss_mb=Figure.of((s.peak_rss_mb for s in steps), 1),
        page_seconds=Figure.of((p.seconds for p in page), 3),
    )


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
