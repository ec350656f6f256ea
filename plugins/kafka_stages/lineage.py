"""What each stage reads and writes, named for Airflow's assets and for OpenLineage.

Assets are declared when a DAG file is parsed, and parsing must not look connections up (a DAG
processor would query the secrets backend or the metadata DB for every file, every parse). So
their URIs come from the environment the DAG processor shares with the tasks, as the watcher of
kafka_pipeline_on_orders already does: the topics' server from ``KAFKA_BOOTSTRAP_SERVERS`` (its
first entry), the store from ``AIRFLOW_CONN_METRICS_DB`` when that variable holds the connection
(the form docs/operations/metrics-store.md gives; only parsed, never looked up), else the default
SQLite file. A connection kept elsewhere (the metadata DB, a secrets backend) is not seen there:
the sink then says, once a run, that its outlet names another store than the one it wrote.

OpenLineage's datasets are made at run time, from the connections the stage really used, so
they are right wherever the connections live.

Each asset's name is its URI (Airflow's default): a name is unique among active assets, and a
fixed name whose URI changes with the environment (another broker, another store) would leave
the new asset inactive, and every task declaring it would fail before it starts.
"""
from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import Asset, AssetWatcher, Connection
from sqlalchemy.engine import URL, make_url

from include.pipeline import settings, topology
from include.pipeline.run.results import Consumed, GenerateResult, ReplayResult, SinkResult
from include.pipeline.stages.calls import CALLS
from include.pipeline.store.schema import product_metrics
from kafka_stages.hooks import store_url
from kafka_stages.triggers import ConsumerLagTrigger

# The table users read (the sink also keeps its partials, ledgers and offsets beside it).
STORE_TABLE = product_metrics.name
POSTGRES_SCHEMA = "public"  # where the sink creates its tables (docs/operations/metrics-store.md)
POSTGRES_PORT = 5432


def first_server(bootstrap: str) -> str:
    """The first ``host:port`` of a bootstrap list, without a listener prefix (``SASL_SSL://``),
    as OpenLineage's naming and the Kafka provider's URIs take it."""
    return bootstrap.split(",")[0].strip().rpartition("://")[2]


def topic_uri(topic: str, bootstrap: str | None = None) -> str:
    """``kafka://host:port/topic``, the form the Kafka provider (2.1.0) validates."""
    return f"kafka://{first_server(bootstrap or settings.bootstrap_servers())}/{topic}"


def topic_asset(topic: str) -> Asset:
    """A topic of the cluster the DAG processor's environment names, as an Asset named by its URI.

    ``orders`` carries the watcher kafka_pipeline_on_orders is scheduled on wherever it is
    declared: Airflow takes an asset's watchers from the DAG file it parsed last, so a declaration
    without it (process's inlet in the other DAGs) would drop the watcher, and with it the
    event-driven runs, each time that file is parsed."""
    return Asset(uri=topic_uri(topic), watchers=[orders_watcher()] if topic == settings.ORDERS else [])


def orders_watcher() -> AssetWatcher:
    """What watches ``orders`` for kafka_pipeline_on_orders: the backlog past process's offsets."""
    return AssetWatcher(name="orders_lag", trigger=ConsumerLagTrigger(
        groups={topology.PROCESS.input: topology.PROCESS.group},
        min_records=settings.on_orders_min_records(),
        max_wait_seconds=settings.on_orders_max_wait_seconds(),
    ))


def parse_time_store_url() -> URL:
    """The metrics store as the environment names it: ``AIRFLOW_CONN_METRICS_DB`` (JSON or URI)
    parsed, not looked up; without it, the default SQLite file in the output directory."""
    raw = os.environ.get("AIRFLOW_CONN_METRICS_DB")
    if not raw:
        return URL.create("sqlite", database=str(settings.metrics_db_path()))
    if raw.lstrip().startswith("{"):
        return store_url(Connection.from_json(raw, conn_id="metrics_db"))
    return store_url(Connection.from_uri(raw, conn_id="metrics_db"))


def store_uri(url: URL | str) -> str:
    """The store's table as an asset URI: ``postgres://host:port/database/public/product_metrics``
    (the Postgres provider's form), or the SQLite file's ``file://`` URI."""
    url = make_url(url)
    if url.get_backend_name() == "postgresql":
        return (f"postgres://{url.host}:{url.port or POSTGRES_PORT}/{url.database}/"
                f"{POSTGRES_SCHEMA}/{STORE_TABLE}")
    return f"file://{Path(url.database).resolve()}"


def store_asset() -> Asset:
    """The metrics store's table, as the environment names it (``parse_time_store_url``)."""
    return Asset(uri=store_uri(parse_time_store_url()))


# A stage's topics that are not asset outlets: generate's `orders` is the asset
# kafka_pipeline_on_orders is scheduled on (its lag watcher); an event from every generate would
# start an on_orders run after each kafka_pipeline run. OpenLineage still gets it.
NOT_OUTLETS = {"generate": {settings.ORDERS}}


def stage_assets(stage: topology.Stage) -> dict[str, list[Asset]]:
    """``inlets`` and ``outlets`` of a stage's task: the topics it reads and writes, and, for the
    sink, the store."""
    outlets = [topic_asset(topic) for topic in stage.outputs if topic not in NOT_OUTLETS.get(stage.name, ())]
    if stage is topology.SINK:
        outlets.append(store_asset())
    return {"inlets": [topic_asset(topic) for topic in stage.topics_read], "outlets": outlets}


def kafka_dataset(bootstrap: str, topic: str, rows: int | None, output: bool):
    """A topic as an OpenLineage dataset: namespace ``kafka://host:port``, name the topic; with
    the records read (input statistics) or written (output statistics) when known."""
    return _dataset(f"kafka://{first_server(bootstrap)}", topic, rows, output)


def store_dataset(url: URL | str, rows: int | None):
    """The store's table as an OpenLineage output: PostgreSQL ``postgres://host:port``,
    ``database.schema.table``; SQLite (no entry in OpenLineage's naming) the file, namespace ``file``."""
    url = make_url(url)
    if url.get_backend_name() == "postgresql":
        namespace = f"postgres://{url.host}:{url.port or POSTGRES_PORT}"
        return _dataset(namespace, f"{url.database}.{POSTGRES_SCHEMA}.{STORE_TABLE}", rows, True)
    return _dataset("file", str(Path(url.database).resolve()), rows, True)


def _dataset(namespace: str, name: str, rows: int | None, output: bool):
    from airflow.providers.common.compat.openlineage.facet import (
        InputDataset,
        OutputDataset,
        OutputStatisticsOutputDatasetFacet,
    )
    from openlineage.client.generated.input_statistics_input_dataset import (
        InputStatisticsInputDatasetFacet,
    )

    if output:
        facet = OutputStatisticsOutputDatasetFacet(rowCount=rows)
        stats = {} if rows is None else {"outputStatistics": facet}
        return OutputDataset(namespace=namespace, name=name, outputFacets=stats)
    stats = {} if rows is None else {"inputStatistics": InputStatisticsInputDatasetFacet(rowCount=rows)}
    return InputDataset(namespace=namespace, name=name, inputFacets=stats)


class Ran:
    """What a stage's try used and returned, kept for its OpenLineage events (made after
    ``execute``): the cluster's bootstrap servers, the store's URL and the stage's result."""

    # Topics written but not counted in the stage's result: analyze's state changelog.
    UNCOUNTED = frozenset({settings.ANALYZE_STATE})

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap, self.store, self.result = bootstrap, None, None

    def datasets(self, task_id: str) -> tuple[list, list]:
        """(inputs, outputs) of the stage's run (its task is named after its call, ``CALLS``) as
        OpenLineage datasets, with their record counts."""
        result, topic = self.result, lambda name, rows, output: kafka_dataset(
            self.bootstrap, name, rows, output)
        if isinstance(result, GenerateResult):
            return [], [topic(settings.ORDERS, result.generated, True)]
        if isinstance(result, ReplayResult):
            return ([topic(settings.PROCESSED, result.read, False), topic(settings.DLQ, None, False)],
                    [topic(settings.METRICS, result.windows, True)])
        if not isinstance(result, Consumed) or task_id not in CALLS:  # create_topics: no data moved
            return [], []
        called = CALLS[task_id].stage
        inputs = [topic(called.input, result.read, False)]
        inputs += [topic(name, None, False) for name in called.reads]
        written = getattr(result, "written", {})
        outputs = [
            topic(name, None if name in self.UNCOUNTED else written.get(name, 0), True)
            for name in called.outputs
        ]
        if isinstance(result, SinkResult) and self.store is not None:
            outputs.append(store_dataset(self.store, result.rows_changed))
        return inputs, outputs
