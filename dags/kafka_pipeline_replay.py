"""kafka_pipeline_replay: rebuild the metrics of a past time range from what Kafka retains.

Trigger it by hand with the range; pause kafka_pipeline meanwhile (both sink into the same store).
Its Kafka tasks share the kafka_pipeline pool with the other DAGs' stages.
"""

from __future__ import annotations

from airflow.sdk import DAG

from include.pipeline.stages.calls import CALLS
from kafka_stages.checks import CheckParamsOperator
from kafka_stages.params import dag_params
from kafka_stages.pipeline import DAG_ARGS, NOTIFY, call_task, sink_task

with DAG(
    dag_id="kafka_pipeline_replay",
    description="Rebuild product metrics of a past time range from processed-orders",
    doc_md=__doc__,
    schedule=None,
    **DAG_ARGS,
    default_args=NOTIFY,
    tags=["kafka", "orders", "replay"],
    params=dag_params("kafka_pipeline_replay"),
) as dag:
    check = CheckParamsOperator(task_id="check_params", retries=0)
    replay = call_task(CALLS["replay"])
    sink = sink_task()

    check >> replay >> sink
