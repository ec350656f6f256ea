"""The pipeline's hooks: its Kafka cluster and its metrics store, from Airflow connections."""
from __future__ import annotations

import importlib
from typing import Callable

from airflow.providers.apache.kafka.hooks.base import (
    CALLBACK_ALLOWLIST_CONFIG_OPTION,
    CALLBACK_CONFIG_KEYS,
    KAFKA_COMMON_CONFIG_SECTION,
    KafkaBaseHook,
)
from airflow.sdk import BaseHook, conf
from airflow.sdk.exceptions import AirflowNotFoundException
from sqlalchemy.engine import URL

from include.pipeline.kafka_io.client import Kafka
from include.pipeline.store.metrics_store import MetricsStore


class PipelineKafkaHook(KafkaBaseHook):
    """A Kafka connection (its extra: the librdkafka config, as the provider's hooks take it),
    handed to the stages as a config rather than one client: a stage needs consumers and
    transactional producers with settings of its own. A callback given as a dotted path
    (``oauth_cb``, ...) is imported only when ``[apache_kafka] callback_allowlist`` lists it, as
    the provider does.

    :param kafka_config_id: the connection of the cluster.
    """

    def get_kafka(self) -> Kafka:
        """The cluster, for a stage to make its clients from; a callback's path must be on the allowlist."""
        origin = f"the {self.kafka_config_id} connection"
        config = dict(self.get_connection(self.kafka_config_id).extra_dejson)
        if not config.get("bootstrap.servers"):
            raise ValueError(
                f"{origin} has no bootstrap.servers in its extra: add the brokers' host:port list"
            )
        for key in CALLBACK_CONFIG_KEYS:
            if isinstance(config.get(key), str):
                config[key] = _trusted_callback(origin, key, config[key])
        return Kafka(config, origin=origin)


def _trusted_callback(origin: str, key: str, path: str) -> Callable:
    allowed = conf.get(KAFKA_COMMON_CONFIG_SECTION, CALLBACK_ALLOWLIST_CONFIG_OPTION, fallback="") or ""
    if path not in {entry.strip() for entry in allowed.split(",")}:
        raise ValueError(
            f"{origin} asks for {key}={path!r}, which [{KAFKA_COMMON_CONFIG_SECTION}] "
            f"{CALLBACK_ALLOWLIST_CONFIG_OPTION} does not list: add its full import path there to trust it"
        )
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


class MetricsDbHook(BaseHook):
    """The metrics store of an Airflow connection: ``postgres`` (psycopg 3; the connection's
    extra becomes query parameters, e.g. ``{"sslmode": "require"}``) or ``sqlite`` (host: the
    file). No such connection: the embedded SQLite store in the output directory.

    :param metrics_db_conn_id: the connection of the metrics database.
    """

    conn_name_attr = "metrics_db_conn_id"
    default_conn_name = "metrics_db"

    def __init__(self, metrics_db_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.metrics_db_conn_id = metrics_db_conn_id

    def get_store(self, read_only: bool = False) -> MetricsStore:
        """The store; ``read_only`` for readers (a page): no write lock, no schema created."""
        try:
            conn = self.get_connection(self.metrics_db_conn_id)
        except AirflowNotFoundException:
            return MetricsStore.default(read_only)
        return MetricsStore(store_url(conn), f"connection {self.metrics_db_conn_id!r}", read_only)


def store_url(conn) -> URL:
    """The SQLAlchemy URL of a metrics_db connection (``postgres`` or ``sqlite``): shared by the
    sink's store and the lineage (``lineage``), so that both always name the same database."""
    if conn.conn_type in ("postgres", "postgresql"):
        return URL.create(
            "postgresql+psycopg", username=conn.login or None, password=conn.password or None,
            host=conn.host or None, port=conn.port or None, database=conn.schema or None,
            query={key: str(value) for key, value in conn.extra_dejson.items()},
        )
    if conn.conn_type == "sqlite":
        return URL.create("sqlite", database=conn.host)
    raise ValueError(
        f"connection {conn.conn_id!r} has type {conn.conn_type!r}: "
        "the metrics store takes a 'postgres' or 'sqlite' connection"
    )
