"""kafka_pipeline: generate -> process -> analyze -> sink -> reconcile over Kafka, hourly.

Wiring only: the stage logic lives in include/pipeline, the Kafka plumbing in plugins/kafka_stages.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, CronDataIntervalTimetable, Param

from include.pipeline import reconcile, settings, stages
from kafka_stages.operators import KafkaStageOperator

STAGES = ("generate", "process", "analyze", "sink")

with DAG(
    dag_id="kafka_pipeline",
    description="Order events through Kafka: validate, enrich, 1-minute metrics per product",
    # A data-interval timetable: each run covers the previous hour, and generated orders get
    # event times inside it.
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,  # stages continue from committed offsets and window state
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    render_template_as_native_obj=True,
    tags=["kafka", "orders", "example"],
    params={
        "orders": Param(2000, type="integer", minimum=0, description="Orders to generate (0: none, process what is in the topic)"),
        "rate": Param(0, type="number", minimum=0, description="Orders per second (0: as fast as possible)"),
        "invalid_ratio": Param(0.05, type="number", minimum=0, maximum=1, description="Share of deliberately invalid orders"),
        "seed": Param(None, type=["null", "integer"], description="Seed for the generated orders (null: the run id, so a cleared run regenerates the same orders)"),
        "grace_seconds": Param(settings.GRACE_SECONDS, type="integer", minimum=0, description="How long after a window ends its late orders still count"),
        "dedup_horizon_seconds": Param(settings.DEDUP_HORIZON_SECONDS, type="integer", minimum=0, description="How long a counted order_id is remembered (>= grace)"),
    },
) as dag:
    create_topics = KafkaStageOperator(task_id="create_topics", stage=stages.create_topics)
    generate = KafkaStageOperator(
        task_id="generate",
        stage=stages.generate,
        op_kwargs={
            "orders": "{{ params.orders }}",
            "rate": "{{ params.rate }}",
            "invalid_ratio": "{{ params.invalid_ratio }}",
            "seed": "{{ run_id if params.seed is none else params.seed }}",
            "start": "{{ data_interval_start }}",
            "end": "{{ data_interval_end }}",
        },
    )
    process = KafkaStageOperator(task_id="process", stage=stages.process)
    analyze = KafkaStageOperator(
        task_id="analyze",
        stage=stages.analyze,
        op_kwargs={
            "grace_seconds": "{{ params.grace_seconds }}",
            "dedup_horizon_seconds": "{{ params.dedup_horizon_seconds }}",
        },
    )
    sink = KafkaStageOperator(task_id="sink", stage=stages.sink)
    check = PythonOperator(
        task_id="reconcile",
        python_callable=reconcile.reconcile,
        retries=0,  # a discrepancy does not go away by itself
        op_kwargs={
            "run_id": "{{ run_id }}",
            "results": {name: f"{{{{ ti.xcom_pull(task_ids='{name}') }}}}" for name in STAGES},
        },
    )

    create_topics >> generate >> process >> analyze >> sink >> check
