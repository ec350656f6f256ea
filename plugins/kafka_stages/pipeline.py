"""The tasks of a pipeline run, shared by the DAGs that run them (wiring only).

Every Kafka stage task of every DAG runs in the one-slot pool ``kafka_pipeline``: the DAGs share
consumer groups and transactional ids, and two instances of a stage would fence each other.
Priority weights rise along the chain, so when the slot frees up, a run that has begun goes on
before another run's first stage starts.
"""
from __future__ import annotations

from typing import Any

from airflow.sdk import Param, chain

from include.pipeline import settings, stages
from kafka_stages.operators import CheckParamsOperator, KafkaStageOperator, ReconcileOperator
from kafka_stages.sensors import ConsumerLagSensor

POOL = "kafka_pipeline"
# Chain position -> priority weight (absolute): later stages first.
POSITION = {"create_topics": 1, "generate": 2, "process": 3, "replay": 4, "analyze": 4, "sink": 5}

GENERATE_PARAMS = {
    "orders": Param(2000, type="integer", minimum=0, description="Orders to generate (0: none)"),
    "rate": Param(0, type="number", minimum=0, description="Orders per second (0: as fast as possible)"),
    "invalid_ratio": Param(
        0.05, type="number", minimum=0, maximum=1, description="Share of deliberately invalid orders"
    ),
    "seed": Param(
        None, type=["null", "integer"],
        description="Seed for the generated orders (null: the run id, so a cleared run makes the same orders)",
    ),
}
SINK_PARAMS = {
    "metrics_json_days": Param(
        settings.METRICS_JSON_DAYS, type="integer", minimum=0,
        description="Days of windows, back from the newest, that the sink exports to metrics.json (0: no file)",
    ),
}
CONSUME_PARAMS = {
    "wait_for_orders_seconds": Param(
        0, type="number", minimum=0,
        description="How long to wait for new records before skipping the stages (0: look once)",
    ),
    "grace_seconds": Param(
        settings.GRACE_SECONDS, type="integer", minimum=0,
        description="How long after a window ends its late orders still count",
    ),
    "dedup_horizon_seconds": Param(
        settings.DEDUP_HORIZON_SECONDS, type="integer", minimum=0,
        description="How long a counted order_id is remembered (>= grace)",
    ),
    **SINK_PARAMS,
}


def stage_task(task_id: str, stage, **kwargs: Any) -> KafkaStageOperator:
    """A stage of include.pipeline.stages as a task in the shared pool."""
    return KafkaStageOperator(
        task_id=task_id, stage=stage, pool=POOL, priority_weight=POSITION[task_id], weight_rule="absolute",
        **kwargs,
    )


def sink_task() -> KafkaStageOperator:
    """The sink, writing to the store of the ``metrics_db`` connection (embedded SQLite without one)."""
    return stage_task(
        "sink", stages.sink, metrics_db_conn_id="metrics_db",
        op_kwargs={"metrics_json_days": "{{ params.metrics_json_days }}"},
    )


def pipeline_tasks(*, generate: bool) -> None:
    """check_params >> create_topics [>> generate] >> wait_for_orders >> process >> analyze >> sink
    >> reconcile, in the DAG being defined."""
    tasks = [
        CheckParamsOperator(task_id="check_params", retries=0),
        stage_task("create_topics", stages.create_topics),
    ]
    if generate:
        tasks.append(stage_task("generate", stages.generate, op_kwargs={
            "orders": "{{ params.orders }}",
            "rate": "{{ params.rate }}",
            "invalid_ratio": "{{ params.invalid_ratio }}",
            "seed": "{{ run_id if params.seed is none else params.seed }}",
            # A run without a data interval (triggered with no logical date) gets the hour before it.
            "start": (
                "{{ data_interval_start | default(dag_run.run_after - macros.timedelta(hours=1), true) }}"
            ),
            "end": "{{ data_interval_end | default(dag_run.run_after, true) }}",
        }))
    tasks += [
        ConsumerLagSensor(
            task_id="wait_for_orders", groups=stages.INPUTS, wait_seconds="{{ params.wait_for_orders_seconds }}",
        ),
        stage_task("process", stages.process),
        stage_task("analyze", stages.analyze, op_kwargs={
            "grace_seconds": "{{ params.grace_seconds }}",
            "dedup_horizon_seconds": "{{ params.dedup_horizon_seconds }}",
        }),
        sink_task(),
    ]
    results = ["generate", "process", "analyze", "sink"] if generate else ["process", "analyze", "sink"]
    tasks.append(ReconcileOperator(
        task_id="reconcile", retries=0,  # a discrepancy does not go away by itself
        results={name: f"{{{{ ti.xcom_pull(task_ids='{name}') }}}}" for name in results},
    ))
    chain(*tasks)
