"""The store's engines per dialect (SQLite, PostgreSQL), and its errors as what to do about them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import (
    Engine,
    create_engine,
    event,
)
from sqlalchemy.engine import URL

LOGIN_REFUSED = ("password authentication failed", "no pg_hba.conf entry", 'role "', "authentication method")


class StoreUnavailable(ConnectionError):
    """The database does not answer, or went away: the task is retried."""


class StoreRefused(ValueError):
    """The database answers but will not do it (login, permissions, another cluster's store): a
    retry would fail the same way."""


def engine(url: URL, read_only: bool) -> Engine:
    """The engine of ``url``: SQLite with WAL and write transactions that take the lock first, or
    PostgreSQL with a connect timeout; a read-only one takes no lock a writer waits for."""
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
