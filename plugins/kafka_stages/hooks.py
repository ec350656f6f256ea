from __future__ import annotations

from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook
from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException
from sqlalchemy.engine import URL

from include.pipeline.kafka_io import Kafka
from include.pipeline.metrics_store import MetricsStore


class PipelineKafkaHook(KafkaBaseHook):
    """The provider's connection handling (extra JSON as the librdkafka config, allow-listed
    callbacks, managed-auth tokens), handed to the stages as a config rather than one client:
    a stage needs consumers and transactional producers with settings of its own."""

    def get_kafka(self) -> Kafka:
        # _build_config is the provider's single place for resolving a connection (2.1.0, pinned).
        return Kafka(self._build_config(), origin=f"the {self.kafka_config_id} connection")


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
        origin = f"connection {self.metrics_db_conn_id!r}"
        if conn.conn_type in ("postgres", "postgresql"):
            url = URL.create(
                "postgresql+psycopg", username=conn.login or None, password=conn.password or None,
                host=conn.host or None, port=conn.port or None, database=conn.schema or None,
                query={key: str(value) for key, value in conn.extra_dejson.items()},
            )
        elif conn.conn_type == "sqlite":
            url = URL.create("sqlite", database=conn.host)
        else:
            raise ValueError(
                f"{origin} has type {conn.conn_type!r}: the metrics store takes a 'postgres' or 'sqlite' connection"
            )
        return MetricsStore(url, origin, read_only)
