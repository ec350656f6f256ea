"""The metrics store against SQLite in a temporary directory (PostgreSQL: tests/integration)."""

import sqlite3
from decimal import Decimal

import pytest

from include.pipeline import metrics_json, metrics_store, store_changes
from include.pipeline.metrics_store import MetricsStore, StoreRefused
from include.pipeline.windows import LedgerMark
from tests.factories import metric

HOUR = 3600
T = 1767607200  # 2026-01-05T10:00:00Z



@pytest.fixture
def store(tmp_path):
    return MetricsStore(f"sqlite:///{tmp_path}/metrics.db", "test")


def apply(store, records, offsets, cluster="cluster-a"):
    with store.transaction(cluster) as txn:
        changes = txn.apply(records)
        txn.set_offsets("product-metrics", offsets)
    return changes


def rows(tmp_path):
    with sqlite3.connect(tmp_path / "metrics.db") as db:
        return db.execute(
            "SELECT window_start, product_id, order_count, total_revenue FROM product_metrics ORDER BY 1, 2"
        ).fetchall()


def test_a_new_store_has_the_schema_and_nothing_else(store, tmp_path):
    assert store.open("cluster-a") == metrics_store.Opened(new=True, offsets={})
    with sqlite3.connect(tmp_path / "metrics.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute(
            "SELECT schema_version, kafka_cluster_id, rows, ledger_count, ledger_revenue_cents "
            "FROM metrics_store"
        ).fetchall() == [(2, None, 0, None, None)]
    assert rows(tmp_path) == []


def test_applying_the_same_records_twice_equals_once(store, tmp_path):
    store.open("cluster-a")
    batch = [
        metric(T, count=1, total="1.00"), metric(T, count=2, total="3.01"), metric(T, "prod-2"),
        metric(T + 60),
    ]
    first = apply(store, batch, {0: 4, 1: 0, 2: 0})
    once = (rows(tmp_path), store.totals())
    second = apply(store, batch, {0: 4, 1: 0, 2: 0})
    assert (first.inserted, first.updated, second.inserted, second.updated) == (3, 0, 0, 0)
    assert (rows(tmp_path), store.totals()) == once
    assert once == (
        [(T, "prod-1", 2, "3.01"), (T, "prod-2", 1, "10.50"), (T + 60, "prod-1", 1, "10.50")],
        store_changes.Totals(rows=3, order_count=4, total_revenue=Decimal("24.01")),
    )
    assert store.open("cluster-a") == metrics_store.Opened(new=False, offsets={0: 4, 1: 0, 2: 0})


def test_rows_offsets_and_totals_commit_together_or_not_at_all(store, tmp_path):
    store.open("cluster-a")
    apply(store, [metric(T)], {0: 1})
    with pytest.raises(RuntimeError, match="after the upserts"):
        with store.transaction("cluster-a") as txn:
            txn.apply([metric(T, count=5, total="50.00"), metric(T + 60)])
            txn.set_offsets("product-metrics", {0: 3})
            raise RuntimeError("a crash after the upserts, before the commit")
    assert rows(tmp_path) == [(T, "prod-1", 1, "10.50")]
    assert store.totals() == store_changes.Totals(rows=1, order_count=1, total_revenue=Decimal("10.50"))
    assert store.open("cluster-a").offsets == {0: 1}


def test_money_is_exact_text_on_sqlite(store, tmp_path):
    store.open("cluster-a")
    huge = "12345678901234567890123456789.99"
    apply(store, [metric(T, count=1, total=huge)], {0: 1})
    assert rows(tmp_path) == [(T, "prod-1", 1, huge)]
    assert store.totals().total_revenue == Decimal(huge)


def test_the_export_holds_the_last_days_counted_back_from_the_newest_window(store, tmp_path):
    store.open("cluster-a")
    newest = T + 10 * 24 * HOUR
    batch = [
        metric(newest - 86400), metric(newest - 86400 + 60), metric(newest - 3600, "prod-2"), metric(newest),
        metric(T),
    ]
    apply(store, batch, {0: 5})
    path = tmp_path / "metrics.json"
    assert store.export(path, 1) == 3
    assert [(r.window_start, r.product_id) for r in metrics_json.read_lines(path)] == [
        (newest - 86400 + 60, "prod-1"), (newest - 3600, "prod-2"), (newest, "prod-1"),
    ]
    assert store.export(path, 10) == 4  # T is 10 days and one window before the newest
    assert store.export(path, 11) == 5


def test_an_empty_store_exports_an_empty_file(store, tmp_path):
    store.open("cluster-a")
    assert store.export(tmp_path / "metrics.json", 7) == 0
    assert (tmp_path / "metrics.json").read_bytes() == b""


def test_an_old_metrics_json_is_imported_with_the_first_batch(store, tmp_path):
    old = tmp_path / "old.json"
    metrics_json.write_lines(old, [[metric(T, count=2, total="5.00"), metric(T, "prod-2")]])
    assert store.open("cluster-a").new
    with store.transaction("cluster-a") as txn:
        assert txn.import_metrics(metrics_json.read_lines(old)) == 2
        txn.apply([metric(T, count=3, total="7.00"), metric(T + 60)])
        txn.set_offsets("product-metrics", {0: 2})
    assert rows(tmp_path) == [
        (T, "prod-1", 3, "7.00"), (T, "prod-2", 1, "10.50"), (T + 60, "prod-1", 1, "10.50")
    ]
    assert store.totals() == store_changes.Totals(rows=3, order_count=5, total_revenue=Decimal("28.00"))
    assert store.open("cluster-a") == metrics_store.Opened(new=False, offsets={0: 2})


def test_a_store_of_another_kafka_cluster_is_refused_before_anything_is_written(store, tmp_path):
    store.open("cluster-a")
    apply(store, [metric(T)], {0: 1})
    with pytest.raises(StoreRefused) as refused:
        store.open("cluster-b")
    assert str(refused.value).startswith(
        f"the metrics store sqlite:///{tmp_path}/metrics.db (test) holds the metrics of Kafka cluster "
        "cluster-a, and this run reads cluster cluster-b: nothing was written. "
        "Give each cluster its own store"
    )
    with pytest.raises(StoreRefused, match="cluster cluster-a"):
        apply(store, [metric(T + 60)], {0: 2}, cluster="cluster-b")
    assert rows(tmp_path) == [(T, "prod-1", 1, "10.50")]


def test_a_store_of_a_newer_schema_version_is_refused(store, tmp_path):
    store.open("cluster-a")
    with sqlite3.connect(tmp_path / "metrics.db") as db:
        db.execute("UPDATE metrics_store SET schema_version = 3")
    with pytest.raises(StoreRefused, match="has schema version 3; this pipeline reads version 2"):
        store.open("cluster-a")
    with sqlite3.connect(tmp_path / "metrics.db") as db:
        assert db.execute("SELECT schema_version FROM metrics_store").fetchall() == [(3,)]


# What version 1 made of metrics_store (the other tables are the same in version 2).
V1_METRICS_STORE = """CREATE TABLE metrics_store (
    id INTEGER NOT NULL CONSTRAINT metrics_store_one_row CHECK (id = 1),
    schema_version INTEGER NOT NULL,
    kafka_cluster_id VARCHAR(64),
    rows BIGINT NOT NULL,
    order_count BIGINT NOT NULL,
    total_revenue TEXT NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL,
    PRIMARY KEY (id)
)"""


def test_a_version_1_store_is_migrated_in_place_keeping_everything(store, tmp_path, caplog):
    store.open("cluster-a")  # the other tables, as version 1 made them too
    apply(store, [metric(T, count=2, total="5.00"), metric(T + 60)], {0: 2})
    with sqlite3.connect(tmp_path / "metrics.db") as db:
        db.execute("DROP TABLE metrics_store")
        db.execute(V1_METRICS_STORE)
        db.execute("INSERT INTO metrics_store VALUES "
                   "(1, 1, 'cluster-a', 2, 3, '15.50', '2026-01-05 10:00:00', '2026-01-05 11:00:00')")
    with caplog.at_level("INFO", logger="include.pipeline.metrics_store"):
        assert store.open("cluster-a") == metrics_store.Opened(new=False, offsets={0: 2})
        assert store.open("cluster-a") == metrics_store.Opened(new=False, offsets={0: 2})  # once
    assert [r.getMessage() for r in caplog.records] == [
        f"migrated the metrics store sqlite:///{tmp_path}/metrics.db from schema version 1 to 2: added the "
        "columns ledger_count, ledger_revenue_cents",
    ]
    with sqlite3.connect(tmp_path / "metrics.db") as db:
        assert db.execute("SELECT * FROM metrics_store").fetchall() == [
            (1, 2, "cluster-a", 2, 3, "15.50", "2026-01-05 10:00:00", "2026-01-05 11:00:00", None, None),
        ]
    assert store.totals() == store_changes.Totals(
        rows=2, order_count=3, total_revenue=Decimal("15.50"), ledger=None
    )
    with store.transaction("cluster-a") as txn:  # the first ledger a record carries is kept from now on
        txn.apply([metric(T + 120)])
        txn.totals.note([None, LedgerMark(4, Decimal("26.00"))])
    assert store.totals() == store_changes.Totals(rows=3, order_count=4, total_revenue=Decimal("26.00"),
                                         ledger=LedgerMark(4, Decimal("26.00")))


def test_the_store_keeps_the_newest_ledger_and_records_without_one_leave_it(store, tmp_path):
    store.open("cluster-a")
    with store.transaction("cluster-a") as txn:
        txn.apply([metric(T, count=2, total="5.00")])
        txn.totals.note([LedgerMark(1, Decimal("1.00")), LedgerMark(2, Decimal("5.00")), None])
    assert store.totals().ledger == LedgerMark(2, Decimal("5.00"))
    with store.transaction("cluster-a") as txn:  # an older analyze batch's record, from another partition
        txn.apply([metric(T + 60, "prod-2", count=1, total="3.00")])
        txn.totals.note([LedgerMark(1, Decimal("1.00"))])
    assert store.totals().ledger == LedgerMark(2, Decimal("5.00"))
    with store.transaction("cluster-a") as txn:  # replayed records: no ledger
        txn.apply([metric(T, count=2, total="5.00")])
        txn.totals.note([None, None])
    assert store.totals().ledger == LedgerMark(2, Decimal("5.00"))
    with store.transaction("cluster-a") as txn:
        txn.totals.note([LedgerMark(3, Decimal("8.00"))])
    assert store.totals() == store_changes.Totals(rows=2, order_count=3, total_revenue=Decimal("8.00"),
                                         ledger=LedgerMark(3, Decimal("8.00")))
    with sqlite3.connect(tmp_path / "metrics.db") as db:  # money as exact text, like the rows'
        ledger = db.execute("SELECT ledger_count, ledger_revenue_cents FROM metrics_store").fetchall()
    assert ledger == [(3, "8.00")]


def test_the_newest_hours_are_read_through_an_index(store, tmp_path):
    store.open("cluster-a")
    with sqlite3.connect(tmp_path / "metrics.db") as db:
        plans = [[row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {query}")] for query in (
            "SELECT * FROM product_metrics WHERE window_start >= 0 ORDER BY window_start DESC",
            "SELECT * FROM product_metrics WHERE product_id = 'prod-1' AND window_start >= 0",
        )]
    assert plans == [
        ["SEARCH product_metrics USING PRIMARY KEY (window_start>?)"],  # rows in key order (WITHOUT ROWID)
        ["SEARCH product_metrics USING INDEX product_metrics_by_product (product_id=? AND window_start>?)"],
    ]


def test_the_name_never_shows_a_password_or_the_connection_extra():
    store = MetricsStore(
        "postgresql+psycopg://metrics:s3cret@db.example:5432/metrics?sslmode=require&sslpassword=k3y",
        "connection 'metrics_db'",
    )
    assert store.name == "postgresql+psycopg://metrics:***@db.example:5432/metrics"


def test_a_database_that_does_not_answer_names_the_connection_and_the_fix():
    store = MetricsStore("postgresql+psycopg://metrics:s3cret@127.0.0.1:9/metrics", "connection 'metrics_db'")
    with pytest.raises(metrics_store.StoreUnavailable) as error:
        store.open("cluster-a")
    message = str(error.value)
    assert message.startswith(
        "cannot use the metrics store postgresql+psycopg://metrics:***@127.0.0.1:9/metrics "
        "(connection 'metrics_db'):"
    )
    assert "start it, or fix the connection's host and port" in message and "s3cret" not in message
