"""The metrics store against SQLite in a temporary directory (PostgreSQL: tests/integration)."""

import sqlite3
from decimal import Decimal

import pytest

from include.pipeline.domain.windows import Ledger, LedgerMark, Partial
from include.pipeline.store import export as metrics_json
from include.pipeline.store import metrics_store
from include.pipeline.store.changes import Totals
from include.pipeline.store.engines import StoreRefused, StoreUnavailable
from include.pipeline.store.metrics_store import MetricsStore
from tests.harness.factories import metric

HOUR = 3600
T = 1767607200  # 2026-01-05T10:00:00Z


@pytest.fixture
def store(tmp_path):
    return MetricsStore(f"sqlite:///{tmp_path}/metrics.db", "test")


def partial(start, product="prod-1", count=1, total="10.50", partition=0):
    """The partial of ``partition`` of a window starting at ``start`` (epoch seconds)."""
    return Partial(start, product, partition, count, Decimal(total))


def apply(store, records, offsets, cluster="cluster-a"):
    with store.transaction(cluster) as txn:
        changes = txn.apply(records)
        txn.set_offsets("product-metrics", offsets)
    return changes


def query(tmp_path, sql):
    with sqlite3.connect(tmp_path / "metrics.db") as db:
        return db.execute(sql).fetchall()


def rows(tmp_path):
    return query(
        tmp_path,
        "SELECT window_start, product_id, order_count, total_revenue FROM product_metrics ORDER BY 1, 2",
    )


def partials(tmp_path):
    return query(tmp_path, "SELECT * FROM product_metric_partials ORDER BY 1, 2, 3")


def ledgers(tmp_path):
    return query(tmp_path, "SELECT * FROM analyze_ledgers ORDER BY 1")


def columns(tmp_path, table):
    return [row[1] for row in query(tmp_path, f"PRAGMA table_info({table})")]


def test_a_new_store_has_the_schema_and_nothing_else(store, tmp_path):
    assert store.open("cluster-a") == metrics_store.Opened(new=True, offsets={})
    assert query(tmp_path, "PRAGMA journal_mode") == [("wal",)]
    assert query(
        tmp_path,
        "SELECT schema_version, kafka_cluster_id, rows, order_count, total_revenue, counted_revenue "
        "FROM metrics_store",
    ) == [(3, None, 0, 0, "0", "0")]
    assert columns(tmp_path, "metrics_store") == [
        "id", "schema_version", "kafka_cluster_id", "rows", "order_count", "total_revenue", "created_at",
        "updated_at", "counted_revenue",
    ]
    assert columns(tmp_path, "product_metric_partials") == [
        "window_start", "product_id", "partition", "order_count", "total",
    ]
    assert columns(tmp_path, "analyze_ledgers") == ["partition", "count", "revenue"]
    assert (rows(tmp_path), partials(tmp_path), ledgers(tmp_path)) == ([], [], [])
    assert store.totals() == Totals()


def test_applying_the_same_records_twice_equals_once(store, tmp_path):
    store.open("cluster-a")
    batch = [
        partial(T, count=1, total="1.00"), partial(T, count=2, total="3.01"), partial(T, "prod-2"),
        partial(T + 60), partial(T, count=1, total="0.005", partition=1),
    ]
    first = apply(store, batch, {0: 4, 1: 1, 2: 0})
    once = (rows(tmp_path), partials(tmp_path), store.totals())
    second = apply(store, batch, {0: 4, 1: 1, 2: 0})
    assert (first.inserted, first.updated, second.inserted, second.updated) == (3, 0, 0, 0)
    assert (len(first.partials), second.partials, second.upserts) == (4, [], [])
    assert (rows(tmp_path), partials(tmp_path), store.totals()) == once
    assert once == (
        # T, prod-1: 3.01 of partition 0 and 0.005 of partition 1 make 3.015, rounded once: 3.02
        [(T, "prod-1", 3, "3.02"), (T, "prod-2", 1, "10.50"), (T + 60, "prod-1", 1, "10.50")],
        [(T, "prod-1", 0, 2, "3.01"), (T, "prod-1", 1, 1, "0.005"), (T, "prod-2", 0, 1, "10.50"),
         (T + 60, "prod-1", 0, 1, "10.50")],
        Totals(rows=3, order_count=5, total_revenue=Decimal("24.02"), counted_revenue=Decimal("24.015")),
    )
    assert store.open("cluster-a") == metrics_store.Opened(new=False, offsets={0: 4, 1: 1, 2: 0})


def test_rows_offsets_and_totals_commit_together_or_not_at_all(store, tmp_path):
    store.open("cluster-a")
    apply(store, [partial(T)], {0: 1})
    with pytest.raises(RuntimeError, match="after the upserts"):
        with store.transaction("cluster-a") as txn:
            txn.apply([partial(T, count=5, total="50.00"), partial(T + 60), partial(T, partition=2)])
            txn.totals.note([LedgerMark(7, Decimal("70.50"), 0)])
            txn.set_offsets("product-metrics", {0: 3})
            raise RuntimeError("a crash after the upserts, before the commit")
    assert rows(tmp_path) == [(T, "prod-1", 1, "10.50")]
    assert partials(tmp_path) == [(T, "prod-1", 0, 1, "10.50")]
    assert ledgers(tmp_path) == []
    assert store.totals() == Totals(
        rows=1, order_count=1, total_revenue=Decimal("10.50"), counted_revenue=Decimal("10.50"),
    )
    assert store.open("cluster-a").offsets == {0: 1}


def test_money_is_exact_text_on_sqlite(store, tmp_path):
    store.open("cluster-a")
    huge = "12345678901234567890123456789.995"
    apply(store, [partial(T, count=1, total=huge)], {0: 1})
    assert rows(tmp_path) == [(T, "prod-1", 1, "12345678901234567890123456790.00")]
    assert partials(tmp_path) == [(T, "prod-1", 0, 1, huge)]
    totals = store.totals()
    assert (totals.total_revenue, totals.counted_revenue) == (
        Decimal("12345678901234567890123456790.00"), Decimal(huge),
    )


def test_the_export_holds_the_last_days_counted_back_from_the_newest_window(store, tmp_path):
    store.open("cluster-a")
    newest = T + 10 * 24 * HOUR
    batch = [
        partial(newest - 86400), partial(newest - 86400 + 60), partial(newest - 3600, "prod-2"),
        partial(newest), partial(newest, partition=1), partial(T),
    ]
    apply(store, batch, {0: 5, 1: 1})
    path = tmp_path / "metrics.json"
    assert store.export(path, 1) == 3
    assert list(metrics_json.read_lines(path)) == [
        metric(newest - 86400 + 60), metric(newest - 3600, "prod-2"), metric(newest, count=2, total="21.00"),
    ]
    assert store.export(path, 10) == 4  # T is 10 days and one window before the newest
    assert store.export(path, 11) == 5


def test_an_empty_store_exports_an_empty_file(store, tmp_path):
    store.open("cluster-a")
    assert store.export(tmp_path / "metrics.json", 7) == 0
    assert (tmp_path / "metrics.json").read_bytes() == b""


def test_an_old_metrics_json_is_imported_with_the_first_batch_as_the_partials_of_partition_minus_1(
    store, tmp_path,
):
    old = tmp_path / "old.json"
    metrics_json.write_lines(old, [[metric(T, count=2, total="5.00"), metric(T, "prod-2")]])
    assert store.open("cluster-a").new
    with store.transaction("cluster-a") as txn:
        assert txn.import_metrics(metrics_json.read_lines(old)) == 2
        txn.apply([partial(T, count=3, total="7.005"), partial(T + 60)])
        txn.set_offsets("product-metrics", {0: 2})
    # What the old file counted stays, and what analyze counts since adds to it.
    assert partials(tmp_path) == [
        (T, "prod-1", -1, 2, "5.00"), (T, "prod-1", 0, 3, "7.005"), (T, "prod-2", -1, 1, "10.50"),
        (T + 60, "prod-1", 0, 1, "10.50"),
    ]
    assert rows(tmp_path) == [
        (T, "prod-1", 5, "12.01"), (T, "prod-2", 1, "10.50"), (T + 60, "prod-1", 1, "10.50")
    ]
    assert store.totals() == Totals(
        rows=3, order_count=7, total_revenue=Decimal("33.01"), counted_revenue=Decimal("33.005"),
    )
    assert store.open("cluster-a") == metrics_store.Opened(new=False, offsets={0: 2})
    with store.transaction("cluster-a", imports=old) as txn:  # once: the store is not new any more
        assert txn.imported == 0
    assert len(partials(tmp_path)) == 4


def test_a_store_of_another_kafka_cluster_is_refused_before_anything_is_written(store, tmp_path):
    store.open("cluster-a")
    apply(store, [partial(T)], {0: 1})
    with pytest.raises(StoreRefused) as refused:
        store.open("cluster-b")
    assert str(refused.value).startswith(
        f"the metrics store sqlite:///{tmp_path}/metrics.db (test) holds the metrics of Kafka cluster "
        "cluster-a, and this run reads cluster cluster-b: nothing was written. "
        "Give each cluster its own store"
    )
    with pytest.raises(StoreRefused, match="cluster cluster-a"):
        apply(store, [partial(T + 60)], {0: 2}, cluster="cluster-b")
    assert rows(tmp_path) == [(T, "prod-1", 1, "10.50")]
    assert partials(tmp_path) == [(T, "prod-1", 0, 1, "10.50")]


def test_a_store_of_a_newer_schema_version_is_refused(store, tmp_path):
    store.open("cluster-a")
    with sqlite3.connect(tmp_path / "metrics.db") as db:
        db.execute("UPDATE metrics_store SET schema_version = 4")
    with pytest.raises(StoreRefused, match="has schema version 4; this pipeline reads version 3"):
        store.open("cluster-a")
    assert query(tmp_path, "SELECT schema_version FROM metrics_store") == [(4,)]


# What versions 1 and 2 made of a store, by hand (SQLite): the rows, the offsets and the store's
# row; version 2 added the ledger columns to it.
OLD_TABLES = [
    """CREATE TABLE product_metrics (
        window_start BIGINT NOT NULL,
        window_end BIGINT NOT NULL,
        product_id VARCHAR(64) NOT NULL,
        product_name VARCHAR(256) NOT NULL,
        order_count BIGINT NOT NULL,
        total_revenue TEXT NOT NULL,
        avg_order_value TEXT NOT NULL,
        updated_at DATETIME NOT NULL,
        CONSTRAINT product_metrics_pkey PRIMARY KEY (window_start, product_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX product_metrics_by_product ON product_metrics (product_id, window_start)",
    """CREATE TABLE sink_offsets (
        topic VARCHAR(249) NOT NULL,
        partition INTEGER NOT NULL,
        next_offset BIGINT NOT NULL,
        CONSTRAINT sink_offsets_pkey PRIMARY KEY (topic, partition)
    )""",
]
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
V2_METRICS_STORE = V1_METRICS_STORE.replace(
    "    PRIMARY KEY (id)", "    ledger_count BIGINT,\n    ledger_revenue_cents TEXT,\n    PRIMARY KEY (id)",
)
OLD_ROWS = [
    (T, T + 60, "prod-1", "Laptop", 2, "5.01", "2.51", "2026-01-05 10:00:00"),  # 5.005 and 5.01 in cents
    (T + 60, T + 120, "prod-1", "Laptop", 1, "10.50", "10.50", "2026-01-05 10:00:00"),
]


def old_store(tmp_path, version, ledger=()):
    """A store as version 1 or 2 left it: 2 rows of 3 orders, 15.51, its offsets at 2."""
    with sqlite3.connect(tmp_path / "metrics.db") as db:
        for statement in [*OLD_TABLES, V1_METRICS_STORE if version == 1 else V2_METRICS_STORE]:
            db.execute(statement)
        db.executemany("INSERT INTO product_metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?)", OLD_ROWS)
        db.execute("INSERT INTO sink_offsets VALUES ('product-metrics', 0, 2)")
        db.execute(
            f"INSERT INTO metrics_store VALUES ({', '.join('?' * (8 + len(ledger)))})",
            (1, version, "cluster-a", 2, 3, "15.51", "2026-01-05 10:00:00", "2026-01-05 11:00:00", *ledger),
        )
    db.close()


def migrated(tmp_path, version):
    return (
        f"migrated the metrics store sqlite:///{tmp_path}/metrics.db from schema version {version} to 3: "
        "its 2 rows are the partials of partition -1 (what analyze counted before it kept its state per "
        "partition)"
    )


# Version 1 kept no ledger: what its rows add up to becomes partition -1's, as version 2's does.
@pytest.mark.parametrize("version, ledger", [(1, ()), (2, (3, "15.51"))])
def test_an_older_store_is_migrated_in_place_its_rows_and_ledger_those_of_partition_minus_1(
    store, tmp_path, caplog, version, ledger,
):
    old_store(tmp_path, version, ledger=ledger)
    if version == 2:
        assert columns(tmp_path, "metrics_store")[-2:] == ["ledger_count", "ledger_revenue_cents"]
    with caplog.at_level("INFO", logger="include.pipeline.store.metrics_store"):
        assert store.open("cluster-a") == metrics_store.Opened(new=False, offsets={0: 2})
        assert store.open("cluster-a") == metrics_store.Opened(new=False, offsets={0: 2})  # once
    logged = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert logged == [("WARNING", migrated(tmp_path, version))]
    # the ledger columns dropped, the exact revenue of the partials: their rows' totals
    assert query(tmp_path, "SELECT * FROM metrics_store") == [
        (1, 3, "cluster-a", 2, 3, "15.51", "2026-01-05 10:00:00", "2026-01-05 11:00:00", "15.51"),
    ]
    assert columns(tmp_path, "metrics_store") == [
        "id", "schema_version", "kafka_cluster_id", "rows", "order_count", "total_revenue", "created_at",
        "updated_at", "counted_revenue",
    ]
    assert partials(tmp_path) == [(T, "prod-1", -1, 2, "5.01"), (T + 60, "prod-1", -1, 1, "10.50")]
    assert rows(tmp_path) == [(T, "prod-1", 2, "5.01"), (T + 60, "prod-1", 1, "10.50")]
    assert ledgers(tmp_path) == [(-1, 3, "15.51")]
    assert store.totals() == Totals(
        rows=2, order_count=3, total_revenue=Decimal("15.51"), counted_revenue=Decimal("15.51"),
        ledgers={-1: LedgerMark(3, Decimal("15.51"), -1)},
    )
    assert store.totals().ledger == Ledger(3, Decimal("15.51"))
    with store.transaction("cluster-a") as txn:  # partition 0 counts on, next to what was counted before
        txn.apply([partial(T, count=1, total="0.004")])
        txn.totals.note([LedgerMark(1, Decimal("0.004"), 0)])
    assert rows(tmp_path) == [(T, "prod-1", 3, "5.01"), (T + 60, "prod-1", 1, "10.50")]  # 5.014
    assert ledgers(tmp_path) == [(-1, 3, "15.51"), (0, 1, "0.004")]
    assert store.totals() == Totals(
        rows=2, order_count=4, total_revenue=Decimal("15.51"), counted_revenue=Decimal("15.514"),
        ledgers={-1: LedgerMark(3, Decimal("15.51"), -1), 0: LedgerMark(1, Decimal("0.004"), 0)},
    )
    assert store.totals().ledger == Ledger(4, Decimal("15.514"))


def test_a_version_2_store_that_kept_no_ledger_gets_its_rows_totals_as_partition_minus_1s(store, tmp_path):
    old_store(tmp_path, 2, ledger=(None, None))
    store.open("cluster-a")
    assert (ledgers(tmp_path), store.totals().ledger) == ([(-1, 3, "15.51")], Ledger(3, Decimal("15.51")))
    assert "ledger_count" not in columns(tmp_path, "metrics_store")
    assert partials(tmp_path) == [(T, "prod-1", -1, 2, "5.01"), (T + 60, "prod-1", -1, 1, "10.50")]


FIRST_LEDGERS = {0: LedgerMark(2, Decimal("5.00"), 0), 1: LedgerMark(1, Decimal("0.005"), 1)}


def test_the_store_keeps_the_newest_ledger_of_each_partition_and_records_without_one_leave_it(
    store, tmp_path,
):
    store.open("cluster-a")
    with store.transaction("cluster-a") as txn:
        txn.apply([partial(T, count=2, total="5.00"), partial(T, count=1, total="0.005", partition=1)])
        txn.totals.note([
            LedgerMark(1, Decimal("1.00"), 0), LedgerMark(2, Decimal("5.00"), 0), None,
            LedgerMark(1, Decimal("0.005"), 1),
        ])
    assert store.totals().ledgers == FIRST_LEDGERS
    assert store.totals().ledger == Ledger(3, Decimal("5.005"))
    with store.transaction("cluster-a") as txn:  # an older analyze batch's record of partition 0
        txn.apply([partial(T + 60, "prod-2", count=1, total="3.00")])
        txn.totals.note([LedgerMark(1, Decimal("1.00"), 0)])
    assert store.totals().ledgers == FIRST_LEDGERS
    with store.transaction("cluster-a") as txn:  # replayed records: no ledger
        txn.apply([partial(T, count=2, total="5.00")])
        txn.totals.note([None, None])
    assert store.totals().ledger == Ledger(3, Decimal("5.005"))
    with store.transaction("cluster-a") as txn:
        txn.totals.note([LedgerMark(3, Decimal("8.00"), 0)])
    assert store.totals() == Totals(
        rows=2, order_count=4, total_revenue=Decimal("8.01"), counted_revenue=Decimal("8.005"),
        ledgers={0: LedgerMark(3, Decimal("8.00"), 0), 1: LedgerMark(1, Decimal("0.005"), 1)},
    )
    assert store.totals().ledger == Ledger(4, Decimal("8.005"))
    assert ledgers(tmp_path) == [(0, 3, "8.00"), (1, 1, "0.005")]  # money as exact text, like the rows'


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
    with pytest.raises(StoreUnavailable) as error:
        store.open("cluster-a")
    message = str(error.value)
    assert message.startswith(
        "cannot use the metrics store postgresql+psycopg://metrics:***@127.0.0.1:9/metrics "
        "(connection 'metrics_db'):"
    )
    assert "start it, or fix the connection's host and port" in message and "s3cret" not in message
