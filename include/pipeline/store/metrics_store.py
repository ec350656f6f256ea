"""The metrics store: product metrics in SQL, embedded SQLite (output/metrics.db) or PostgreSQL,
through SQLAlchemy Core.

Tables (schema version 3; ``open`` migrates a version 1 or 2 store in place):
- ``product_metrics``: one row per (window_start, product_id); money as exact decimals. The
  primary key leads with window_start, so "the newest N hours" is a range scan of it;
  ``product_metrics_by_product`` serves the same per product. What readers read.
- ``product_metric_partials`` (version 3): per (window_start, product_id, partition of
  processed-orders) what analyze counted there, the total exact; a row is the sum of its
  window's partials. Partition -1 holds the rows of before partials (a migrated store).
- ``analyze_ledgers`` (version 3): per partition, the newest analyze ledger the applied records
  carried: what the partials add up to, which reconcile compares them with.
- ``sink_offsets``: per (topic, partition) the next offset the rows do not include yet. It commits
  in the same transaction as the rows, so the sink resumes from here, exactly.
- ``metrics_store``: one row: the schema version, the Kafka cluster the rows come from and the
  all-runs totals (kept up to date by each transaction, so nothing scans the tables).
"""

from __future__ import annotations

import logging
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Iterable, Iterator

import sqlalchemy.exc
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Connection,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    create_engine,
    delete,
    event,
    func,
    inspect,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.schema import CreateColumn

from include.pipeline import settings
from include.pipeline.domain.windows import LEGACY, LedgerMark, Metric, Partial, PartialKey, WindowKey
from include.pipeline.store import changes as store_changes
from include.pipeline.store import export as metrics_json

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3
LOGIN_REFUSED = ("password authentication failed", "no pg_hba.conf entry", 'role "', "authentication method")
CHUNK = 1000  # keys per lookup and rows per import step: well under both engines' parameter limits
DAY_SECONDS = 86_400
EXPORT_CHUNK = 10_000


class Money(TypeDecorator):
    """An exact decimal: NUMERIC on PostgreSQL, unbounded (an order may be as large as a double);
    on SQLite, whose NUMERIC turns values into floats, the decimal's text."""

    impl = Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect):
        """The column's type on this database: TEXT on SQLite, NUMERIC elsewhere."""
        return dialect.type_descriptor(Text() if dialect.name == "sqlite" else Numeric(asdecimal=True))

    def process_bind_param(self, value, dialect):
        """The value to write: the decimal's text on SQLite, the decimal elsewhere."""
        return str(value) if value is not None and dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        """The value read, as a Decimal."""
        return None if value is None else Decimal(value)


metadata = MetaData()
product_metrics = Table(
    "product_metrics", metadata,
    Column("window_start", BigInteger, nullable=False),
    Column("window_end", BigInteger, nullable=False),
    Column("product_id", String(64), nullable=False),
    Column("product_name", String(256), nullable=False),
    Column("order_count", BigInteger, nullable=False),
    Column("total_revenue", Money, nullable=False),
    Column("avg_order_value", Money, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("window_start", "product_id", name="product_metrics_pkey"),
    Index("product_metrics_by_product", "product_id", "window_start"),
    sqlite_with_rowid=False,  # rows stored in key order: a range of windows is read in sequence
)
product_metric_partials = Table(
    "product_metric_partials", metadata,
    Column("window_start", BigInteger, nullable=False),
    Column("product_id", String(64), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("order_count", BigInteger, nullable=False),
    Column("total", Money, nullable=False),  # exact, unrounded
    PrimaryKeyConstraint("window_start", "product_id", "partition", name="product_metric_partials_pkey"),
    sqlite_with_rowid=False,
)
analyze_ledgers = Table(
    "analyze_ledgers", metadata,
    Column("partition", Integer, nullable=False),
    Column("count", BigInteger, nullable=False),
    Column("revenue", Money, nullable=False),
    PrimaryKeyConstraint("partition", name="analyze_ledgers_pkey"),
)
sink_offsets = Table(
    "sink_offsets", metadata,
    Column("topic", String(249), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("next_offset", BigInteger, nullable=False),
    PrimaryKeyConstraint("topic", "partition", name="sink_offsets_pkey"),
)
store_info = Table(
    "metrics_store", metadata,
    Column("id", Integer, CheckConstraint("id = 1", name="metrics_store_one_row"), primary_key=True),
    Column("schema_version", Integer, nullable=False),
    Column("kafka_cluster_id", String(64)),  # set by the first transaction that writes rows
    Column("rows", BigInteger, nullable=False),
    Column("order_count", BigInteger, nullable=False),
    Column("total_revenue", Money, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("counted_revenue", Money, nullable=False),  # version 3: the partials' exact sum
)
METRIC_COLUMNS = [product_metrics.c[name] for name in Metric.__struct_fields__]
PARTIAL_COLUMNS = [product_metric_partials.c[name] for name in Partial.__struct_fields__]


class StoreUnavailable(ConnectionError):
    """The database does not answer, or went away: the task is retried."""


class StoreRefused(ValueError):
    """The database answers but will not do it (login, permissions, another cluster's store): a
    retry would fail the same way."""


@dataclass
class Opened:
    """What ``open`` found: whether the store is new, and the offsets the sink goes on from."""

    new: bool  # no transaction has written rows yet: the store starts from scratch or an import
    offsets: dict[int, int]  # product-metrics partition -> next offset


class MetricsStore:
    """A metrics store at an engine URL. ``origin`` says where the URL came from (messages name
    it); ``name`` is the URL without its password and query (logs and the manifest show it)."""

    def __init__(self, url: URL | str, origin: str, read_only: bool = False) -> None:
        self.url, self.origin = make_url(url), origin
        self.name = self.url.set(query={}).render_as_string(hide_password=True)
        self.engine = _engine(self.url, read_only)

    @classmethod
    def default(cls, read_only: bool = False) -> MetricsStore:
        """The embedded SQLite store in the output directory, for when there is no metrics_db connection."""
        url = URL.create("sqlite", database=str(settings.metrics_db_path()))
        return cls(url, "no 'metrics_db' connection: the default", read_only)

    def open(self, cluster_id: str) -> Opened:
        """Create the schema when missing, migrate a version 1 store; refuse a store of another
        schema version or of another Kafka cluster, before anything is written."""
        now = _now()
        with self.errors(), self.engine.begin() as conn:
            metadata.create_all(conn)
            # Locked (PostgreSQL; SQLite began IMMEDIATE): two sinks opening an older store
            # migrate it once.
            version = conn.execute(select(store_info.c.schema_version).with_for_update()).scalar_one_or_none()
            if version is None:  # a new store (its table made just now, with this version's columns)
                conn.execute(self._insert(store_info).values(
                    id=1, schema_version=SCHEMA_VERSION, rows=0, order_count=0, total_revenue=Decimal(0),
                    counted_revenue=Decimal(0), created_at=now, updated_at=now,
                ).on_conflict_do_nothing(index_elements=["id"]))
                version = conn.execute(select(store_info.c.schema_version).with_for_update()).scalar_one()
            if version not in (1, 2, SCHEMA_VERSION):
                raise StoreRefused(
                    f"the metrics store {self.name} ({self.origin}) has schema version {version}; this "
                    f"pipeline reads version {SCHEMA_VERSION}: run the pipeline version that wrote it, or "
                    "point the metrics_db connection at another database"
                )
            if version < SCHEMA_VERSION:
                rows = _migrate(conn, version)
            info = conn.execute(select(store_info.c.kafka_cluster_id)).one()
            offsets = _offsets(conn, settings.METRICS)
        if version < SCHEMA_VERSION:
            log.warning(
                "migrated the metrics store %s from schema version %d to %d: its %d rows are the partials "
                "of partition %d (what analyze counted before it kept its state per partition)",
                self.name, version, SCHEMA_VERSION, rows, LEGACY,
            )
        self._check_cluster(info.kafka_cluster_id, cluster_id)
        return Opened(new=info.kafka_cluster_id is None, offsets=offsets)

    def _check_cluster(self, stored: str | None, cluster_id: str) -> None:
        if stored is not None and stored != cluster_id:
            raise StoreRefused(
                f"the metrics store {self.name} ({self.origin}) holds the metrics of Kafka cluster {stored}, "
                f"and this run reads cluster {cluster_id}: nothing was written. "
                "Give each cluster its own store: "
                "another metrics_db connection, or another PIPELINE_OUTPUT_DIR for the default SQLite store"
            )

    @contextmanager
    def transaction(
        self, cluster_id: str, read_from: dict[int, int] | None = None, imports: Path | None = None,
    ) -> Iterator[StoreTransaction]:
        """One database transaction: rows, offsets and totals commit together or not at all.

        :param read_from: the product-metrics offsets the caller read on from; when the store's
            are not those any more, another sink wrote to it meanwhile, and nothing is written.
        :param imports: an old metrics.json, imported by the first transaction of a new store
            (one that no transaction has written to yet); ``txn.imported`` counts its lines.
        """
        with self.errors(), self.engine.begin() as conn:
            txn = StoreTransaction(conn, self._insert)
            self._check_cluster(txn.cluster_id, cluster_id)
            if read_from is not None and txn.offsets(settings.METRICS) != read_from:
                raise RuntimeError(
                    f"the offsets in the metrics store {self.name} moved while this sink ran: another sink "
                    "writes to it. Run one sink per store (the kafka_pipeline pool does)"
                )
            if imports is not None and txn.cluster_id is None:
                txn.imported = txn.import_metrics(metrics_json.read_lines(imports))
                log.info("imported %d lines of %s into %s", txn.imported, imports, self.name)
            yield txn
            txn.finish(cluster_id)

    def totals(self) -> store_changes.Totals:
        """The all-runs totals and the analyze ledger they add up to, as the last transaction
        left them."""
        with self.errors(), self.engine.connect() as conn:
            return _totals(conn, conn.execute(select(store_info)).one())

    def export(self, path: Path, days: int) -> int:
        """Replace ``path`` with the windows that end less than ``days`` days before the newest
        window ends; returns the lines written. Reads only those rows."""
        with self.errors(), self.engine.connect() as conn:
            newest = conn.execute(select(func.max(product_metrics.c.window_start))).scalar()
            since = (newest if newest is not None else 0) - days * DAY_SECONDS
            return metrics_json.write_lines(path, self._rows_since(conn, since))

    def newest_window(self) -> int | None:
        """The start of the newest window in the store (None: no rows yet). The primary key's
        first column, so one index step."""
        with self._reading() as conn:
            return conn and conn.execute(select(func.max(product_metrics.c.window_start))).scalar()

    def windows(self, start: int, end: int) -> list[Metric]:
        """The rows of the windows starting in [start, end), in key order: a range scan."""
        window_start = product_metrics.c.window_start
        query = (select(*METRIC_COLUMNS).where(window_start >= start, window_start < end)
                 .order_by(window_start, product_metrics.c.product_id))
        with self._reading() as conn:
            return [Metric(*row) for row in conn.execute(query)] if conn else []

    @contextmanager
    def _reading(self) -> Iterator[Connection | None]:
        """A connection to read with; None while the store has no tables (no sink has run)."""
        database = self.url.database
        if self.engine.dialect.name == "sqlite" and database and not Path(database).exists():
            yield None
            return
        with self.errors(), self.engine.connect() as conn:
            yield conn if inspect(conn).has_table(product_metrics.name) else None

    def _rows_since(self, conn, since: int) -> Iterator[list[Metric]]:
        """The rows of the windows after ``since``, in key order, in chunks straight from the
        driver (a server-side cursor on PostgreSQL): these rows are many, and SQLAlchemy's
        per-row work would be most of the export's cost."""
        postgres = self.engine.dialect.name == "postgresql"
        driver = conn.connection.driver_connection
        cursor = driver.cursor(name="metrics_export") if postgres else driver.cursor()
        try:
            cursor.execute(
                "SELECT window_start, window_end, product_id, product_name, order_count, "
                # text: the drivers' fastest path
                "CAST(total_revenue AS TEXT), CAST(avg_order_value AS TEXT) "
                f"FROM product_metrics WHERE window_start > {'%s' if postgres else '?'} "
                "ORDER BY window_start, product_id", (since,),
            )
            while chunk := cursor.fetchmany(EXPORT_CHUNK):
                yield [Metric(start, end, pid, name, count, Decimal(total), Decimal(avg))
                       for start, end, pid, name, count, total, avg in chunk]
        finally:
            cursor.close()

    def _insert(self, table: Table):
        return (postgresql if self.engine.dialect.name == "postgresql" else sqlite).insert(table)

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Database errors as what to do about them, naming the store and where it came from."""
        try:
            yield
        except sqlalchemy.exc.DBAPIError as exc:
            raise self._explain(exc) from None

    def _explain(self, exc: sqlalchemy.exc.DBAPIError) -> Exception:
        code = getattr(exc.orig, "sqlstate", None) or ""
        text = " ".join(str(exc.orig).split())
        where = f"the metrics store {self.name} ({self.origin})"
        sqlite_file = self.engine.dialect.name == "sqlite"
        # A refused connection carries no SQLSTATE (libpq only has the server's message).
        if code.startswith("28") or any(phrase in text for phrase in LOGIN_REFUSED):
            return StoreRefused(f"{where} refused the login: {text}. Fix the connection's login and password")
        if code == "3D000" or ("database" in text and "does not exist" in text):
            return StoreRefused(f"{where}: {text}. Create the database, or fix the connection's schema")
        if code in ("25006", "42501") or "readonly database" in text:
            fix = ("make the file and its folder writable" if sqlite_file
                   else "grant the login CREATE on the schema and INSERT, UPDATE, SELECT on its tables")
            return StoreRefused(f"{where} is read-only for this pipeline: {text}. To fix: {fix}, "
                                "or point the metrics_db connection at a writable database")
        if isinstance(exc, sqlalchemy.exc.OperationalError) and (not code or code[:2] in ("08", "57")):
            fix = ("make its folder exist and be writable" if sqlite_file
                   else "start it, or fix the connection's host and port")
            return StoreUnavailable(f"cannot use {where}: {text}. To fix: {fix}; nothing was half-written")
        return exc


class StoreTransaction:
    """What one sink transaction reads and writes. The store's row is locked for the transaction
    (PostgreSQL; SQLite begins IMMEDIATE), so two sinks cannot interleave."""

    def __init__(self, conn, insert) -> None:
        self.conn, self._insert = conn, insert
        info = conn.execute(select(store_info).with_for_update()).one()
        self.cluster_id = info.kafka_cluster_id
        self.totals = _totals(conn, info)
        self.ledgers_before = dict(self.totals.ledgers)
        self.now = _now()
        self.imported = 0  # lines of an old metrics.json this transaction imported

    def _by_window(self, table: Table, columns: list, windows: set[WindowKey]) -> list:
        """The rows of ``table`` of these windows. Looked up by window_start (a list of (window,
        product) pairs takes PostgreSQL longer to plan than to run), then kept by window."""
        found = []
        starts = sorted({start for start, _ in windows})
        for i in range(0, len(starts), CHUNK):
            query = select(*columns).where(table.c.window_start.in_(starts[i:i + CHUNK]))
            found += [row for row in self.conn.execute(query)
                      if (row.window_start, row.product_id) in windows]
        return found

    def current(self, windows: set[WindowKey]) -> dict[WindowKey, Metric]:
        """The rows of these windows."""
        rows = (Metric(*row) for row in self._by_window(product_metrics, METRIC_COLUMNS, windows))
        return {row.key: row for row in rows}

    def partials(self, windows: set[WindowKey]) -> dict[PartialKey, Partial]:
        """Every partial of these windows."""
        found = (Partial(*row) for row in self._by_window(product_metric_partials, PARTIAL_COLUMNS, windows))
        return {partial.key: partial for partial in found}

    def apply(self, records: list[Partial]) -> store_changes.Changes:
        """Upsert what the records change (the newest per key wins), each window's row the sum of
        its partials, totals moved to match."""
        windows = {r.window for r in records}
        changes = store_changes.changes(records, self.partials(windows), self.current(windows), self.totals)
        if changes.partials:
            self._upsert(product_metric_partials, ["window_start", "product_id", "partition"],
                         [_fields(p) for p in changes.partials])
        if changes.upserts:
            self._upsert(product_metrics, ["window_start", "product_id"],
                         [{**_fields(m), "updated_at": self.now} for m in changes.upserts])
        for start, product_id in changes.deletes:
            self.conn.execute(delete(product_metrics).where(
                product_metrics.c.window_start == start, product_metrics.c.product_id == product_id,
            ))
        return changes

    def _upsert(self, table: Table, key: list[str], rows: list[dict]) -> None:
        statement = self._insert(table)
        self.conn.execute(
            statement.on_conflict_do_update(
                index_elements=key,
                set_={c.name: statement.excluded[c.name] for c in table.c if not c.primary_key},
            ),
            rows,
        )

    def import_metrics(self, metrics: Iterable[Metric]) -> int:
        """Apply an old metrics.json's lines (each the partial of partition -1 of its window),
        CHUNK at a time; returns how many were read."""
        lines, chunk = 0, []
        for metric in metrics:
            chunk.append(Partial(metric.window_start, metric.product_id, LEGACY, metric.order_count,
                                 metric.total_revenue))
            lines += 1
            if len(chunk) == CHUNK:
                self.apply(chunk)
                chunk = []
        self.apply(chunk)
        return lines

    def offsets(self, topic: str) -> dict[int, int]:
        """Per partition of ``topic``, the next offset the rows do not include yet."""
        return _offsets(self.conn, topic)

    def set_offsets(self, topic: str, offsets: dict[int, int]) -> None:
        """Moves the offsets of ``topic`` on with the rows: the sink resumes from them, exactly."""
        if offsets:
            self._upsert(sink_offsets, ["topic", "partition"], [
                {"topic": topic, "partition": p, "next_offset": o} for p, o in offsets.items()
            ])

    def finish(self, cluster_id: str) -> None:
        """Writes the totals, the ledgers and the cluster the rows come from, as the transaction left them."""
        t = self.totals
        self.conn.execute(update(store_info).values(
            kafka_cluster_id=cluster_id, rows=t.rows, order_count=t.order_count,
            total_revenue=t.total_revenue, counted_revenue=t.counted_revenue, updated_at=self.now,
        ))
        changed = [mark for p, mark in t.ledgers.items() if self.ledgers_before.get(p) != mark]
        if changed:
            self._upsert(analyze_ledgers, ["partition"], [
                {"partition": m.partition, "count": m.count, "revenue": m.revenue} for m in changed
            ])


def _totals(conn, info) -> store_changes.Totals:
    """The totals of the metrics_store row ``info``, and the ledgers."""
    ledgers = {
        row.partition: LedgerMark(row.count, row.revenue, row.partition)
        for row in conn.execute(select(analyze_ledgers))
    }
    return store_changes.Totals(
        info.rows, info.order_count, info.total_revenue, info.counted_revenue, ledgers,
    )


def _migrate(conn: Connection, version: int) -> int:
    """Version 1 or 2 -> 3 in place: the rows become the partials of partition -1 (LEGACY), and
    that partition's ledger what they add up to; returns the rows."""
    column = str(CreateColumn(store_info.c.counted_revenue).compile(dialect=conn.dialect))
    money_type = column.split(" ", 1)[1]
    nullable = money_type.replace("NOT NULL", "")  # filled below: the rows' total, exact in cents
    conn.exec_driver_sql(f"ALTER TABLE {store_info.name} ADD COLUMN counted_revenue {nullable}")
    conn.execute(product_metric_partials.insert().from_select(
        PARTIAL_COLUMNS,
        select(product_metrics.c.window_start, product_metrics.c.product_id, literal(LEGACY),
               product_metrics.c.order_count, product_metrics.c.total_revenue),
    ))
    count, cents = conn.execute(select(store_info.c.order_count, store_info.c.total_revenue)).one()
    if version == 2:
        ledger = conn.exec_driver_sql(
            f"SELECT ledger_count, ledger_revenue_cents FROM {store_info.name}"
        ).one()
        if ledger[0] is not None:
            count, cents = ledger
        for column in ("ledger_count", "ledger_revenue_cents"):
            conn.exec_driver_sql(f"ALTER TABLE {store_info.name} DROP COLUMN {column}")
    # What the rows add up to is partition -1's ledger: a version 2 store's, else the rows' own
    # totals (what reconcile compared them with then: the run's ledger, equal when it passed).
    conn.execute(analyze_ledgers.insert().values(partition=LEGACY, count=count, revenue=Decimal(cents)))
    conn.execute(update(store_info).values(
        schema_version=SCHEMA_VERSION, counted_revenue=store_info.c.total_revenue,
    ))
    return conn.execute(select(func.count()).select_from(product_metrics)).scalar_one()


def _fields(record: Metric | Partial) -> dict:
    return {name: getattr(record, name) for name in record.__struct_fields__}


def _offsets(conn, topic: str) -> dict[int, int]:
    columns = sink_offsets.c
    return dict(conn.execute(
        select(columns.partition, columns.next_offset).where(columns.topic == topic)
    ).all())


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _engine(url: URL, read_only: bool) -> Engine:
    if url.get_backend_name() != "sqlite":
        read_only_args = {"options": "-c default_transaction_read_only=on"} if read_only else {}
        return create_engine(url, connect_args={"connect_timeout": 10, **read_only_args})
    if read_only:  # plain deferred transactions: a reader takes no lock the sink waits for
        return create_engine(
            "sqlite://",
            creator=lambda: sqlite3.connect(f"file:{url.database}?mode=ro", uri=True, timeout=30),
        )
    if url.database:
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # transactions begin below, not in the driver
        # WAL: readers (a dashboard, the export) never block the sink, nor it them.
        dbapi_connection.execute("PRAGMA journal_mode=WAL")

    @event.listens_for(engine, "begin")
    def begin(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock first: no upgrade race with another writer

    return engine
