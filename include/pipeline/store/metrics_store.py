"""The metrics store: product metrics in SQL, embedded SQLite (output/metrics.db) or PostgreSQL,
through SQLAlchemy Core.

The tables: ``schema``; a sink transaction: ``transaction``; engines and errors: ``engines``.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Iterator

import sqlalchemy.exc
from sqlalchemy import (
    Connection,
    Table,
    func,
    inspect,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url

from include.pipeline import settings
from include.pipeline.domain.windows import LEGACY, Metric
from include.pipeline.store import changes as store_changes
from include.pipeline.store import export as metrics_json
from include.pipeline.store.engines import LOGIN_REFUSED, StoreRefused, StoreUnavailable, engine
from include.pipeline.store.schema import (
    METRIC_COLUMNS,
    SCHEMA_VERSION,
    metadata,
    migrate,
    product_metrics,
    store_info,
)
from include.pipeline.store.transaction import StoreTransaction, now, offsets_of, totals_of

log = logging.getLogger(__name__)

DAY_SECONDS = 86_400
EXPORT_CHUNK = 10_000


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
        self.engine = engine(self.url, read_only)

    @classmethod
    def default(cls, read_only: bool = False) -> MetricsStore:
        """The embedded SQLite store in the output directory, for when there is no metrics_db connection."""
        url = URL.create("sqlite", database=str(settings.metrics_db_path()))
        return cls(url, "no 'metrics_db' connection: the default", read_only)

    def open(self, cluster_id: str) -> Opened:
        """Create the schema when missing, migrate a version 1 store; refuse a store of another
        schema version or of another Kafka cluster, before anything is written."""
        at = now()
        with self.errors(), self.engine.begin() as conn:
            metadata.create_all(conn)
            # Locked (PostgreSQL; SQLite began IMMEDIATE): two sinks opening an older store
            # migrate it once.
            version = conn.execute(select(store_info.c.schema_version).with_for_update()).scalar_one_or_none()
            if version is None:  # a new store (its table made just now, with this version's columns)
                conn.execute(self._insert(store_info).values(
                    id=1, schema_version=SCHEMA_VERSION, rows=0, order_count=0, total_revenue=Decimal(0),
                    counted_revenue=Decimal(0), created_at=at, updated_at=at,
                ).on_conflict_do_nothing(index_elements=["id"]))
                version = conn.execute(select(store_info.c.schema_version).with_for_update()).scalar_one()
            if version not in (1, 2, SCHEMA_VERSION):
                raise StoreRefused(
                    f"the metrics store {self.name} ({self.origin}) has schema version {version}; this "
                    f"pipeline reads version {SCHEMA_VERSION}: run the pipeline version that wrote it, or "
                    "point the metrics_db connection at another database"
                )
            if version < SCHEMA_VERSION:
                rows = migrate(conn, version)
            info = conn.execute(select(store_info.c.kafka_cluster_id)).one()
            offsets = offsets_of(conn, settings.METRICS)
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
            return totals_of(conn, conn.execute(select(store_info)).one())

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
