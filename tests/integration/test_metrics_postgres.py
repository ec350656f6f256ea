"""The metrics store on a real PostgreSQL server (PostgreSQL 15 from Debian: initdb in a temporary
directory, pg_ctl on a free port), the metrics_db connection pointing at it: a whole run checked
row by row, and the sink killed or its database stopped mid-transaction, each retried to an
exact end; a database that does not answer, refuses the login or is read-only says what to fix;
a store of schema version 1 migrated in place.

"Mid-transaction" is caught as tests/integration/test_faults_crash.py catches "mid-batch": the
task is frozen (SIGSTOP) every few tens of milliseconds and looked at from outside, here with
psycopg: some of its batches committed (offsets in the store), and an open transaction of it
that has written rows.
"""

import json
import os
import signal
import time
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal

import pytest

from include.pipeline import settings
from include.pipeline.domain.windows import LedgerMark, Metric, Partial
from include.pipeline.store import changes as store_changes
from include.pipeline.store.metrics_store import MetricsStore, Opened
from scripts.kafka.local import free_port
from scripts.postgres.local import PASSWORD, USER
from tests.harness.expected import expected_metrics

T = 1767607200  # 2026-01-05T10:00:00Z
PRODUCTS = {
    "prod-1": "Laptop", "prod-2": "Phone", "prod-3": "Tablet", "prod-4": "Monitor", "prod-5": "Keyboard",
}
CENT = Decimal("0.01")


def metric(start: int, product_id: str, count: int, total: Decimal) -> dict:
    return {"window_start": start, "window_end": start + 60, "product_id": product_id,
            "product_name": PRODUCTS[product_id], "order_count": count, "total_revenue": total,
            "avg_order_value": (total / count).quantize(CENT, ROUND_HALF_UP)}


def product_metrics_input(pipeline, windows: int = 2400, updates: int = 5) -> list[dict]:
    """windows x 5 products, each record updated ``updates`` times (growing totals, as analyze
    publishes them), on product-metrics; returns the newest per key, as the store must end."""
    pipeline.task("create_topics")
    records, newest = [], {}
    for update in range(1, updates + 1):
        for w in range(windows):
            for product_id in PRODUCTS:
                doc = metric(T + 60 * w, product_id, update, Decimal(update * 1000 + w) / 100)
                records.append((f"{doc['window_start']}:{product_id}".encode(), doc))
                newest[doc["window_start"], product_id] = doc
    pipeline.produce(settings.METRICS, [(key, json.dumps(doc, default=str).encode()) for key, doc in records])
    return [newest[key] for key in sorted(newest)]


class Outside:
    """The store as psycopg sees it from outside the task."""

    def __init__(self, postgres):
        self.db = postgres.connect("metrics")

    def committed(self) -> int:
        if self.db.execute("SELECT to_regclass('sink_offsets')").fetchone() == (None,):
            return 0  # the task has not made its tables yet
        row = self.db.execute("SELECT coalesce(sum(next_offset), 0) FROM sink_offsets WHERE topic = %s",
                              [settings.METRICS]).fetchone()
        return int(row[0])

    def writing(self) -> bool:
        """A session of the store, not this one, in a transaction that has written."""
        row = self.db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'metrics' AND pid <> pg_backend_pid() "
            "AND backend_xid IS NOT NULL"
        ).fetchone()
        return row[0] > 0

    def consistent(self) -> tuple[int, int, Decimal]:
        """(rows, orders, revenue) of the table, after checking the totals row says the same."""
        rows, orders, revenue = self.db.execute(
            "SELECT count(*), coalesce(sum(order_count), 0), coalesce(sum(total_revenue), 0) "
            "FROM product_metrics"
        ).fetchone()
        totals = self.db.execute("SELECT rows, order_count, total_revenue FROM metrics_store").fetchone()
        assert totals == (rows, orders, revenue), "the store's totals are not those of its rows"
        return rows, orders, revenue

    def close(self):
        self.db.close()


def freeze_mid_transaction(pipeline, proc, outside: Outside, end: int, deadline_s: float = 180) -> int:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, (
            f"sink ended (exit code {proc.returncode}) before it was caught mid-transaction"
        )
        os.killpg(proc.pid, signal.SIGSTOP)
        done = outside.committed()
        assert done < end, (
            "sink committed everything before it was caught mid-transaction: give it more input"
        )
        if done > 0 and outside.writing():
            return done
        os.killpg(proc.pid, signal.SIGCONT)
        time.sleep(0.02)
    pytest.fail(f"sink was not caught mid-transaction within {deadline_s}s")


def end_offsets(pipeline) -> int:
    return len(pipeline.read(settings.METRICS))  # nothing else writes it: offsets are 0..n-1 per partition


def assert_exact(pipeline, outside: Outside, expected: list[dict], end: int) -> None:
    assert pipeline.store_rows() == expected
    assert outside.consistent() == (
        len(expected), sum(m["order_count"] for m in expected), sum(m["total_revenue"] for m in expected)
    )
    assert outside.committed() == end
    assert pipeline.metrics_lines() == expected  # the export, from the store


def test_a_whole_run_into_postgres(pipeline, postgres):
    pipeline.use_postgres(postgres)
    result = pipeline.dag_test("2026-01-05T10:00:00+00:00", orders=3000, seed=12, invalid_ratio=0.1)
    processed = [r.json() for r in pipeline.read("processed-orders")]
    expected = expected_metrics(processed)
    assert sum(m["order_count"] for m in expected) == len(processed) > 2500
    assert pipeline.store_rows() == expected
    assert pipeline.metrics_lines() == expected
    assert not (pipeline.output / "metrics.db").exists()

    manifest = pipeline.manifest()
    assert manifest["reconciled"] is True
    assert manifest["summary"]["store"] == f"postgresql+psycopg://metrics:***@127.0.0.1:{postgres.port}/metrics"
    assert (manifest["summary"]["metrics_rows"], manifest["summary"]["rows_changed"]) == (
        len(expected), len(expected)
    )
    written = [p for p in pipeline.output.rglob("*") if p.is_file()]
    assert [p for p in written if PASSWORD.encode() in p.read_bytes()] == []
    assert PASSWORD not in result.output


def test_kill_9_of_the_sink_mid_transaction_then_retry(pipeline, postgres):
    pipeline.use_postgres(postgres)
    expected = product_metrics_input(pipeline)
    end = end_offsets(pipeline)
    outside = Outside(postgres)
    try:
        with pipeline.running("sink") as proc:
            done = freeze_mid_transaction(pipeline, proc, outside, end)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        deadline = time.monotonic() + 30
        while outside.writing():  # the server sees the client gone and rolls its transaction back
            assert time.monotonic() < deadline, "the killed sink's transaction was never rolled back"
            time.sleep(0.1)
        assert 0 < outside.committed() == done < end
        rows, _, _ = outside.consistent()  # what committed is whole: totals match rows
        assert 0 < rows <= len(expected)
        pipeline.task("sink")  # Airflow's retry
        assert_exact(pipeline, outside, expected, end)
    finally:
        outside.close()


def test_the_database_stopped_during_the_sink_then_the_retry_after_it_is_back(pipeline, postgres):
    pipeline.use_postgres(postgres)
    expected = product_metrics_input(pipeline)
    end = end_offsets(pipeline)
    outside = Outside(postgres)
    with pipeline.running("sink") as proc:
        done = freeze_mid_transaction(pipeline, proc, outside, end)
        outside.close()
        postgres.stop()  # a fast shutdown: the open transaction is rolled back
        os.killpg(proc.pid, signal.SIGCONT)
        assert proc.wait(timeout=120) != 0  # the attempt fails (Airflow retries it)
    postgres.start()
    outside = Outside(postgres)
    try:
        assert outside.committed() == done
        outside.consistent()
        pipeline.task("sink")  # the retry, with the database back
        assert_exact(pipeline, outside, expected, end)
    finally:
        outside.close()


def test_a_database_that_is_down_refuses_the_login_or_is_read_only_says_what_to_fix(pipeline, postgres):
    expected = product_metrics_input(pipeline, windows=10, updates=2)
    end = end_offsets(pipeline)

    def sink_fails_with(connection: dict, *wanted: str) -> None:
        pipeline.env["AIRFLOW_CONN_METRICS_DB"] = json.dumps(connection)
        result = pipeline.task("sink", ok=False)
        assert not result.ok
        for text in wanted:
            assert text in result.output
        assert connection["password"] not in result.output

    down = {**postgres.connection(), "port": free_port()}
    sink_fails_with(
        down,
        f"cannot use the metrics store postgresql+psycopg://metrics:***@127.0.0.1:{down['port']}/metrics "
        "(connection 'metrics_db')", "To fix: start it, or fix the connection's host and port",
    )
    sink_fails_with(
        postgres.connection(password="not-the-password"),
        "(connection 'metrics_db') refused the login: connection failed:",
        'password authentication failed for user "metrics". Fix the connection\'s login and password',
    )
    with postgres.connect() as admin:
        admin.execute("ALTER DATABASE metrics SET default_transaction_read_only = on")
    sink_fails_with(
        postgres.connection(), "(connection 'metrics_db') is read-only for this pipeline:",
        "To fix: grant the login CREATE on the schema and INSERT, UPDATE, SELECT on its tables",
    )
    with postgres.connect() as admin:
        admin.execute("ALTER DATABASE metrics RESET default_transaction_read_only")
    with postgres.connect("metrics") as db:  # nothing was half-written: not even the tables
        assert db.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)

    pipeline.use_postgres(postgres)  # fixed: the next attempt completes exactly
    pipeline.task("sink")
    outside = Outside(postgres)
    try:
        assert_exact(pipeline, outside, expected, end)
    finally:
        outside.close()
    assert Counter(m["order_count"] for m in expected) == {2: 50}


# What version 1 made of metrics_store (the other tables are the same in version 2).
V1_METRICS_STORE = """CREATE TABLE metrics_store (
    id SERIAL NOT NULL CONSTRAINT metrics_store_one_row CHECK (id = 1),
    schema_version INTEGER NOT NULL,
    kafka_cluster_id VARCHAR(64),
    rows BIGINT NOT NULL,
    order_count BIGINT NOT NULL,
    total_revenue NUMERIC NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (id)
)"""


def test_a_version_1_store_is_migrated_in_place_keeping_everything(postgres, caplog):
    store = MetricsStore(postgres.url(), "test")
    store.open("cluster-a")  # the other tables, as version 1 made them too
    with store.transaction("cluster-a") as txn:
        txn.apply([Partial(T, "prod-1", 0, 2, Decimal("5.00"))])
        txn.set_offsets(settings.METRICS, {0: 1})
    with postgres.connect("metrics", USER, PASSWORD) as db:  # the pipeline's login, which owns the tables
        db.execute("DROP TABLE metrics_store")
        db.execute("DROP TABLE product_metric_partials")  # version 1 had none: its rows are all
        db.execute("DROP TABLE analyze_ledgers")
        db.execute(V1_METRICS_STORE)
        db.execute("INSERT INTO metrics_store VALUES (1, 1, 'cluster-a', 1, 2, 5.00, now(), now())")
    with caplog.at_level("INFO", logger="include.pipeline.store.metrics_store"):
        assert store.open("cluster-a") == Opened(new=False, offsets={0: 1})
        assert store.open("cluster-a") == Opened(new=False, offsets={0: 1})  # once
    assert [r.getMessage() for r in caplog.records] == [
        f"migrated the metrics store postgresql+psycopg://metrics:***@127.0.0.1:{postgres.port}/metrics "
        "from schema version 1 to 3: its 1 rows are the partials of partition -1 (what analyze counted "
        "before it kept its state per partition)",
    ]
    with postgres.connect("metrics") as db:
        columns = db.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'metrics_store' AND column_name LIKE '%revenue%' ORDER BY 1"
        ).fetchall()
        row = db.execute(
            "SELECT schema_version, kafka_cluster_id, rows, order_count, total_revenue, counted_revenue "
            "FROM metrics_store"
        ).fetchall()
        partials = db.execute("SELECT * FROM product_metric_partials").fetchall()
    assert columns == [("counted_revenue", "numeric"), ("total_revenue", "numeric")]
    assert row == [(3, "cluster-a", 1, 2, Decimal("5.00"), Decimal("5.00"))]
    assert partials == [(T, "prod-1", -1, 2, Decimal("5.00"))]
    # New partials of the window add to the migrated one.
    with store.transaction("cluster-a") as txn:
        txn.apply([Partial(T, "prod-1", 3, 1, Decimal("0.005"))])
        txn.totals.note([LedgerMark(1, Decimal("0.005"), 3)])
    assert store.totals() == store_changes.Totals(  # what the rows added up to: partition -1's ledger
        1, 3, Decimal("5.01"), Decimal("5.005"),
        {-1: LedgerMark(2, Decimal("5.00"), -1), 3: LedgerMark(1, Decimal("0.005"), 3)},
    )
    assert store.windows(T, T + 60) == [
        Metric(T, T + 60, "prod-1", "Laptop", 3, Decimal("5.01"), Decimal("1.67")),
    ]
    store.engine.dispose()
