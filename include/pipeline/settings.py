"""The one place for topic names and runtime settings (the product catalogue: ``domain.catalogue``)."""

from __future__ import annotations

import os
from pathlib import Path

ORDERS = "orders"
PROCESSED = "processed-orders"
METRICS = "product-metrics"
DLQ = "orders-dlq"
# Compacted changelog of the analyze stage's window aggregates (exact sums), so that a window
# fed by several runs, on any worker, continues from where the last run left it.
ANALYZE_STATE = "analyze-state"

# Partitions of each topic create_topics makes (PIPELINE_PARTITIONS; existing topics keep theirs):
# the most workers a stage can run as. 6 splits evenly over 1, 2, 3 and 6 workers.
DEFAULT_PARTITIONS = 6
# Instances of each mapped stage (the DAGs' `workers` param): one, as before partitions mattered;
# more where there are cores (or Celery workers) to run them.
WORKERS = 1
# Compacted topics keep the newest record per key; rolling segments hourly lets that happen.
COMPACTED = {"cleanup.policy": "compact", "segment.ms": "3600000", "min.cleanable.dirty.ratio": "0.1"}
TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    ORDERS: {},
    PROCESSED: {},
    METRICS: COMPACTED,
    # A dead letter keeps the rejected value unchanged, even one at the broker's size limit.
    DLQ: {"max.message.bytes": str(4 * 1024 * 1024)},
    ANALYZE_STATE: COMPACTED,
}

# Consumer groups (committed offsets) and transactional ids, one per stage.
GROUP_PREFIX = "kafka-pipeline"

METRICS_JSON_DAYS = 7  # days of windows in the metrics.json export (a DAG param)
GRACE_SECONDS = 3600  # late-order grace period (a DAG param)
DEDUP_HORIZON_SECONDS = 24 * 3600  # how long a counted order_id is remembered (a DAG param)

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def bootstrap_servers() -> str:
    """The brokers to reach without a config file: KAFKA_BOOTSTRAP_SERVERS, else the local one."""
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP)


def output_dir() -> Path:
    """Where the pipeline writes its files: PIPELINE_OUTPUT_DIR, else output/ in the project."""
    return Path(os.environ.get("PIPELINE_OUTPUT_DIR", PROJECT_ROOT / "output"))


def metrics_path() -> Path:
    """The metrics.json export."""
    return output_dir() / "metrics.json"


def metrics_db_path() -> Path:
    """The embedded metrics store, used when there is no metrics_db connection."""
    return output_dir() / "metrics.db"


def runs_dir() -> Path:
    """The folder of the run manifests."""
    return output_dir() / "runs"


def _number(name: str, default: str, kind: type, minimum: float):
    raw = os.environ.get(name, default)
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise ValueError(f"{name} must be a {kind.__name__} >= {minimum}, got {raw!r}")
    return value


def partitions() -> int:
    """Partitions of each topic the pipeline creates."""
    return _number("PIPELINE_PARTITIONS", str(DEFAULT_PARTITIONS), int, 1)


def on_orders_min_records() -> int:
    """Lag on `orders` that starts a kafka_pipeline_on_orders run at once."""
    return _number("KAFKA_PIPELINE_ON_ORDERS_MIN_RECORDS", "10000", int, 1)


def on_orders_max_wait_seconds() -> float:
    """How long fewer orders may wait before they start a run anyway."""
    return _number("KAFKA_PIPELINE_ON_ORDERS_MAX_WAIT_SECONDS", "300", float, 0)


def open_transaction_wait() -> float:
    """Seconds a bounded read waits for a transaction still open to end before it ends without
    what that holds back (PIPELINE_OPEN_TRANSACTION_WAIT_SECONDS): about what the broker takes to
    abort one, librdkafka's transaction.timeout.ms (60 s) and its check every 10 s."""
    return _number("PIPELINE_OPEN_TRANSACTION_WAIT_SECONDS", "75", float, 1)


DEFAULT_METRICS_PORT = 9464  # Prometheus' default port for exporters; + a stage process's index


def pushgateway_url() -> str | None:
    """The Prometheus Pushgateway a bounded task pushes its metrics to after its stage
    (PIPELINE_PUSHGATEWAY_URL, e.g. http://127.0.0.1:9091); None (unset or empty): no push."""
    return os.environ.get("PIPELINE_PUSHGATEWAY_URL") or None


def metrics_port() -> int:
    """The first port of continuous mode's /metrics servers (PIPELINE_METRICS_PORT), each stage
    process on this plus its index; 0: none."""
    port = _number("PIPELINE_METRICS_PORT", str(DEFAULT_METRICS_PORT), int, 0)
    if port > 65535:
        raise ValueError(f"PIPELINE_METRICS_PORT must be a port (at most 65535), got {port}")
    return port


def metrics_host() -> str:
    """The address continuous mode's /metrics servers listen on (PIPELINE_METRICS_HOST): the
    loopback unless a Prometheus on another host must scrape them."""
    return os.environ.get("PIPELINE_METRICS_HOST", "127.0.0.1")
