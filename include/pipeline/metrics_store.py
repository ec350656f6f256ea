"""The metrics store: product metrics in SQL, embedded SQLite (output/metrics.db) or PostgreSQL,
through SQLAlchemy Core.

Tables (schema version 2; ``open`` migrates a version 1 store in place):
- ``product_metrics``: one row per (window_start, product_id); money as exact decimals. The
  primary key leads with window_start, so "the newest N hours" is a range scan of it;
  ``product_metrics_by_product`` serves the same per product.
- ``sink_offsets``: per (topic, partition) the next offset the rows do not include yet. It commits
  in the same transaction as the rows, so the sink resumes from here, exactly.
- ``metrics_store``: one row: the schema version, the Kafka cluster the rows come from, the
  all-runs totals (kept up to date by each transaction, so nothing scans the table) and the
  analyze ledger they add up to (version 2: the newest the applied records carried), which
  reconcile compares them with.
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
    event,
    func,
    inspect,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.schema import CreateColumn

from include.pipeline import metrics_json, settings, store_changes
from include.pipeline.windows import LedgerMark, Metric, WindowKey

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
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
    # Version 2. NULL: no applied record carried the ledger yet (a migrated store, replayed records).
    Column("ledger_count", BigInteger),
    Column("ledger_revenue_cents", Money),
)
LEDGER_COLUMNS = (store_info.c.ledger_count, store_info.c.ledger_revenue_cents)  # added by version 2
METRIC_COLUMNS = [product_metrics.c[name] for name in Metric.__struct_fields__]


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
            conn.execute(self._insert(store_info).values(
                id=1, schema_version=SCHEMA_VERSION, rows=0, order_count=0, total_revenue=Decimal(0),
                created_at=now, updated_at=now,
            ).on_conflict_do_nothing(index_elements=["id"]))
            # Locked (PostgreSQL; SQLite began IMMEDIATE): two sinks opening a version 1 store
            # migrate it once.
            version = conn.execute(select(store_info.c.schema_version).with_for_update()).scalar_one()
            if version not in (1, SCHEMA_VERSION):
                raise StoreRefused(
                    f"the metrics store {self.name} ({self.origin}) has schema version {version}; this "
                    f"pipeline reads version {SCHEMA_VERSION}: run the pipeline version that wrote it, or "
                    "point the metrics_db connection at another database"
                )
            if version == 1:
                _migrate_from_1(conn)
            info = conn.execute(select(store_info)).one()
            offsets = _offsets(conn, settings.METRICS)
        if version == 1:
            log.info("migrated the metrics store %s from schema version 1 to %d: added the columns %s",
                     self.name, SCHEMA_VERSION, ", ".join(column.name for column in LEDGER_COLUMNS))
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
            return _totals(conn.execute(select(store_info)).one())

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
        self.totals = _totals(info)
        self.now = _now()
        self.imported = 0  # lines of an old metrics.json this transaction imported

    def current(self, keys: set[WindowKey]) -> dict[WindowKey, Metric]:
        """The rows of these keys. Looked up by window (a list of (window, product) pairs takes
        PostgreSQL longer to plan than to run), then kept by key."""
        rows: dict[WindowKey, Metric] = {}
        starts = sorted({start for start, _ in keys})
        for i in range(0, len(starts), CHUNK):
            query = select(*METRIC_COLUMNS).where(product_metrics.c.window_start.in_(starts[i:i + CHUNK]))
            for row in self.conn.execute(query):
                metric = Metric(*row)
                if metric.key in keys:
                    rows[metric.key] = metric
        return rows

    def apply(self, records: list[Metric]) -> store_changes.Changes:
        """Upsert what the records change (the newest per key wins), totals moved to match."""
        changes = store_changes.changes(records, self.current({r.key for r in records}), self.totals)
        if changes.upserts:
            statement = self._insert(product_metrics)
            self.conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["window_start", "product_id"],
                    set_={c.name: statement.excluded[c.name] for c in product_metrics.c if not c.primary_key},
                ),
                [{**_fields(m), "updated_at": self.now} for m in changes.upserts],
            )
        return changes

    def import_metrics(self, metrics: Iterable[Metric]) -> int:
        """Apply an old metrics.json's lines, CHUNK at a time; returns how many were read."""
        lines, chunk = 0, []
        for metric in metrics:
            chunk.append(metric)
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
            statement = self._insert(sink_offsets)
            self.conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["topic", "partition"],
                    set_={"next_offset": statement.excluded.next_offset}
                ),
                [{"topic": topic, "partition": p, "next_offset": o} for p, o in offsets.items()],
            )

    def finish(self, cluster_id: str) -> None:
        """Writes the totals, the ledger and the cluster the rows come from, as the transaction left them."""
        t, ledger = self.totals, self.totals.ledger
        self.conn.execute(update(store_info).values(
            kafka_cluster_id=cluster_id, rows=t.rows, order_count=t.order_count,
            total_revenue=t.total_revenue, ledger_count=None if ledger is None else ledger.count,
            ledger_revenue_cents=None if ledger is None else ledger.revenue_cents, updated_at=self.now,
        ))


def _totals(info) -> store_changes.Totals:
    """The totals of the metrics_store row ``info``."""
    ledger = None if info.ledger_count is None else LedgerMark(info.ledger_count, info.ledger_revenue_cents)
    return store_changes.Totals(info.rows, info.order_count, info.total_revenue, ledger)


def _migrate_from_1(conn: Connection) -> None:
    """Version 1 -> 2 in place: the ledger columns, NULL until a record carrying the ledger is
    applied."""
    for column in LEDGER_COLUMNS:
        definition = CreateColumn(column).compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {store_info.name} ADD COLUMN {definition}")
    conn.execute(update(store_info).values(schema_version=SCHEMA_VERSION))


def _fields(metric: Metric) -> dict:
    return {name: getattr(metric, name) for name in Metric.__struct_fields__}


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
