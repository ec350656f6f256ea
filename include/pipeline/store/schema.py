"""The metrics store's schema, version 3, and its migration from versions 1 and 2 (``migrate``).

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

from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Connection,
    DateTime,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.schema import CreateColumn

from include.pipeline.domain.windows import LEGACY, Metric, Partial

SCHEMA_VERSION = 3


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


def migrate(conn: Connection, version: int) -> int:
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
