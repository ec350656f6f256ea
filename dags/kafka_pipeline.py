"""kafka_pipeline: generate -> process -> analyze -> sink -> reconcile over Kafka, hourly.

Wiring only, of an Airflow DAG: the stage logic lives in include/pipeline, the Kafka plumbing and
the task chain (shared with kafka_pipeline_on_orders) in plugins/kafka_stages.
"""

from __future__ import annotations

from kafka_stages.params import dag_params
from kafka_stages.pipeline import hourly_dag, pipeline_tasks

with hourly_dag(
    "kafka_pipeline", "Order events through Kafka: validate, enrich, 1-minute metrics per product", __doc__,
    tags=["kafka", "orders", "example"], params=dag_params("kafka_pipeline"),
):
    pipeline_tasks(generate=True)
