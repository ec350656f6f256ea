"""kafka_pipeline_on_orders: process -> analyze -> sink -> reconcile when orders arrive.

Scheduled on the `orders` topic as an Asset, whose AssetWatcher runs ConsumerLagTrigger in the
triggerer: a run starts once the process stage's group is KAFKA_PIPELINE_ON_ORDERS_MIN_RECORDS
(10,000) orders behind, or when fewer have waited KAFKA_PIPELINE_ON_ORDERS_MAX_WAIT_SECONDS (300).
The watcher only reads offsets; the stages own them. Unpause the DAG to start watching.
"""

from __future__ import annotations

from airflow.sdk import DAG

from include.pipeline import settings
from kafka_stages.lineage import topic_asset
from kafka_stages.params import dag_params
from kafka_stages.pipeline import DAG_ARGS, RETRIES, pipeline_tasks

orders = topic_asset(settings.ORDERS)  # with its watcher (kafka_stages.lineage.orders_watcher)

with DAG(
    dag_id="kafka_pipeline_on_orders",
    description="The kafka_pipeline stages, run when orders arrive instead of on the clock",
    doc_md=__doc__,
    schedule=[orders],
    **DAG_ARGS,
    default_args=RETRIES,
    tags=["kafka", "orders", "event-driven"],
    params=dag_params("kafka_pipeline_on_orders"),
):
    pipeline_tasks(generate=False)
