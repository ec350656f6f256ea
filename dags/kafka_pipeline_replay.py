"""kafka_pipeline_replay: rebuild the metrics of a past time range from what Kafka retains.

Trigger it by hand with the range; pause kafka_pipeline meanwhile (both sink into the same store).
Its Kafka tasks share the kafka_pipeline pool with the other DAGs' stages.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param

from include.pipeline import stages
from kafka_stages.operators import CheckParamsOperator
from kafka_stages.pipeline import DAG_ARGS, sink_params, sink_task, stage_task

with DAG(
    dag_id="kafka_pipeline_replay",
    description="Rebuild product metrics of a past time range from processed-orders",
    doc_md=__doc__,
    schedule=None,
    **DAG_ARGS,
    tags=["kafka", "orders", "replay"],
    params={
        "start": Param(
            "2026-01-05T09:00:00+00:00", type="string", format="date-time",
            description="First window start (inclusive)",
        ),
        "end": Param(
            "2026-01-05T10:00:00+00:00", type="string", format="date-time",
            description="Last window start (exclusive)",
        ),
        "allow_partial": Param(
            False, type="boolean",
            description="Replay even if retention already deleted part of processed-orders",
        ),
        **sink_params(),
    },
) as dag:
    check = CheckParamsOperator(task_id="check_params", retries=0)
    replay = stage_task(
        "replay",
        stages.replay,
        op_kwargs={
            "start": "{{ macros.datetime.fromisoformat(params.start) }}",
            "end": "{{ macros.datetime.fromisoformat(params.end) }}",
            "allow_partial": "{{ params.allow_partial }}",
        },
    )
    sink = sink_task()

    check >> replay >> sink
