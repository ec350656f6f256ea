"""kafka_pipeline: generate -> process -> analyze -> sink -> reconcile over Kafka, hourly.

Wiring only: the stage logic lives in include/pipeline, the Kafka plumbing and the task chain
(shared with kafka_pipeline_on_orders) in plugins/kafka_stages.
"""

from __future__ import annotations

from airflow.sdk import DAG, CronDataIntervalTimetable

from kafka_stages.pipeline import CONSUME_PARAMS, DAG_ARGS, GENERATE_PARAMS, RETRIES, pipeline_tasks

with DAG(
    dag_id="kafka_pipeline",
    description="Order events through Kafka: validate, enrich, 1-minute metrics per product",
    doc_md=__doc__,
    # A data-interval timetable: each run covers the previous hour, and generated orders get
    # event times inside it.
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    **DAG_ARGS,
    default_args=RETRIES,
    tags=["kafka", "orders", "example"],
    params={**GENERATE_PARAMS, **CONSUME_PARAMS},
):
    pipeline_tasks(generate=True)
