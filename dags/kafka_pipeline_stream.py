"""kafka_pipeline_stream: generate, process, analyze and sink streaming together, hourly.

Each run streams for `duration_seconds` (a transaction every `commit_interval_ms`), then every
stage ends once the stage before it has and it has read all that stage wrote; reconcile checks
the run's counts and revenue as for kafka_pipeline. The stages share their consumer groups and
the `kafka_pipeline` pool with the other DAGs, so two instances of a stage never run at once.

Wiring only, of an Airflow DAG: the stage logic lives in include/pipeline, the tasks in
plugins/kafka_stages.
"""

from __future__ import annotations

from kafka_stages.params import dag_params
from kafka_stages.pipeline import hourly_dag, stream_tasks

with hourly_dag(
    "kafka_pipeline_stream",
    "Order events streaming through Kafka: sub-second metrics per product, handed over hourly", __doc__,
    tags=["kafka", "orders", "streaming"], params=dag_params("kafka_pipeline_stream"),
):
    stream_tasks()
