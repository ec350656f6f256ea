"""The tasks of a pipeline run, shared by the DAGs that run them (wiring only).

Every Kafka stage task of every DAG runs in the pool ``kafka_pipeline``: the DAGs share consumer
groups and transactional ids, and two instances of a stage would fence each other. A bounded
task that is not mapped takes all of the pool's slots, so it runs alone; a mapped stage's
``workers`` instances (``process``) and each instance of a stream run's stages take one slot, so
they run together. (A pool cannot size a claim by a run's param: where two runs' instances of a
stage do overlap, the later one fences the earlier, ``stages.transform.TransformLoop``, so the earlier
fails and is retried, and no partition is ever read by two at once.) Priority weights rise
along the chain, so when the pool frees up, a run that has begun goes on before another run's
first stage starts.
"""
from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import DAG, CronDataIntervalTimetable, Param, chain

from include.pipeline import settings, stages, topology
from include.pipeline.stages.calls import CALLS, StageCall
from kafka_stages import lineage, notifier
from kafka_stages.checks import CheckParamsOperator, ReconcileOperator
from kafka_stages.operators import KafkaStageOperator, KafkaStreamOperator
from kafka_stages.sensors import ConsumerLagSensor

POOL = "kafka_pipeline"
# Every DAG's own arguments: one run at a time (its stages continue from committed offsets and
# window state, and a stream run hands over to the next); conf values keep their types.
DAG_ARGS: dict[str, Any] = {
    "start_date": datetime(2026, 1, 1, tzinfo=timezone.utc), "catchup": False, "max_active_runs": 1,
    "render_template_as_native_obj": True,
}
# Every task of every DAG: a failure that is final (no retry left) is sent to the webhook of the
# pipeline_alerts connection, if there is one (kafka_stages.notifier).
NOTIFY: dict[str, Any] = {"on_failure_callback": [notifier.PipelineNotifier()]}
# The scheduled DAGs' default_args.
RETRIES = {"retries": 2, "retry_delay": timedelta(seconds=30), **NOTIFY}
# No DeadlineAlert for a run that overruns its hour: with one, `airflow dags test` (make run, the
# in-process tests) fails every run that succeeds in Airflow 3.3.2 ("No DeadlineAlert found with
# id ...": dag.test() looks the alerts up by ids its own serialization made anew). The notifier
# can already be a deadline's AsyncCallback (docs/operations/observability.md).
PIPELINE = topology.names(topology.PIPELINE)
CONSUMING = topology.names(topology.CONSUMING)
# The stages run as `workers` mapped instances, each a share of the partitions of its input.
MAPPED = tuple(topology.names(topology.SCALABLE))
# The pool's size: a stream run's stages, each as many instances as the topics have partitions.
POOL_SLOTS = len(PIPELINE) * settings.DEFAULT_PARTITIONS
# Chain position -> priority weight (absolute): later stages first.
POSITION = {"create_topics": 1, "generate": 2, "process": 3, "replay": 4, "analyze": 4, "sink": 5}

def hourly_dag(dag_id: str, description: str, doc_md: str, tags: list[str], params: dict[str, Param]) -> DAG:
    """A DAG run every hour for the hour before (a data-interval timetable: the orders a run
    generates get event times inside its interval), one run at a time, its tasks retried twice.

    :param dag_id: the DAG's id
    :param description: its one line in the DAG list
    :param doc_md: its documentation (the DAG file's ``__doc__``)
    :param tags: its tags
    :param params: its params (this module's ``*_params()``)
    """
    return DAG(
        dag_id=dag_id, description=description, doc_md=doc_md,
        schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
        **DAG_ARGS, default_args=RETRIES, tags=tags, params=params,
    )


# How a task takes a run param that is not passed as it is.
TEMPLATES = {
    "seed": "{{ run_id if params.seed is none else params.seed }}",
    "start": "{{ macros.datetime.fromisoformat(params.start) }}",
    "end": "{{ macros.datetime.fromisoformat(params.end) }}",
}


def stage_task(task_id: str, stage, operator=KafkaStageOperator, **kwargs: Any) -> KafkaStageOperator:
    """A stage of include.pipeline.stages as a task in the shared pool: bounded, with the whole
    pool; streaming (``KafkaStreamOperator``), with a slot of it."""
    return operator(
        task_id=task_id, stage=stage, pool=POOL,
        pool_slots=1 if operator is KafkaStreamOperator else POOL_SLOTS,
        priority_weight=POSITION[task_id], weight_rule="absolute", **kwargs,
    )


def mapped_stage_task(task_id: str, stage, plan, operator=KafkaStageOperator, **kwargs: Any):
    """A stage as ``workers`` mapped instances, a slot of the pool each: instance ``worker``
    reads its share of the input's partitions (``include.pipeline.domain.assignment``).

    :param plan: what the instances are mapped over: the worker indexes check_params returns.
    :param operator: ``KafkaStageOperator``, or ``KafkaStreamOperator`` for a stream run's.
    """
    op_kwargs = {**kwargs.pop("op_kwargs", {}), "workers": "{{ params.workers }}"}
    partial = operator.partial(
        task_id=task_id, stage=stage, pool=POOL, pool_slots=1, priority_weight=POSITION[task_id],
        weight_rule="absolute", op_kwargs=op_kwargs, **kwargs,
    )
    if sys.argv[1:3] == ["tasks", "test"]:
        # `tasks test` runs one instance, often in a run of its own with no check_params XCom to
        # map over: here the instances are known when the file is parsed (as many as can work).
        return partial.expand(worker=list(range(settings.partitions())))
    return partial.expand(worker=plan)


def call_task(call: StageCall, plan=None, operator=KafkaStageOperator, op_kwargs=None, **kwargs: Any):
    """The task of a stage's call (``stages.calls``), its run params taken from the run's:
    mapped over ``plan`` if the stage runs as ``workers`` instances.

    :param op_kwargs: what the stage takes besides its run params.
    """
    following = operator is KafkaStreamOperator
    taken = {name: TEMPLATES.get(name, f"{{{{ params.{name} }}}}") for name in call.names(following)}
    arguments = {**taken, **(op_kwargs or {})}
    if call.stage is topology.SINK:  # to the store of the metrics_db connection (embedded SQLite without one)
        kwargs["metrics_db_conn_id"] = "metrics_db"
    kwargs.update(lineage.stage_assets(call.stage))  # its topics (and the store) as inlets and outlets
    if call.mapped:
        return mapped_stage_task(call.name, call.run, plan, operator, op_kwargs=arguments, **kwargs)
    return stage_task(call.name, call.run, operator, op_kwargs=arguments, **kwargs)


def create_topics_task(needs: list[str]) -> KafkaStageOperator:
    """Creates missing topics, then checks the principal holds the ACLs of the stages the run needs
    and the inputs have a partition for each worker."""
    return stage_task(
        "create_topics", stages.create_topics,
        op_kwargs={"stages": needs, "workers": "{{ params.workers | default(1) }}"},
    )


def sink_task() -> KafkaStageOperator:
    """The sink of a bounded run."""
    return call_task(CALLS["sink"])


def reconcile_task(results: list[str]) -> ReconcileOperator:
    """The reconcile task, over the XComs of the given stages' tasks."""
    return ReconcileOperator(
        task_id="reconcile", retries=0,  # a discrepancy does not go away by itself
        results={name: f"{{{{ ti.xcom_pull(task_ids='{name}') }}}}" for name in results},
    )


def pipeline_tasks(*, generate: bool) -> None:
    """check_params >> create_topics [>> generate] >> wait_for_orders >> process >> analyze >> sink
    >> reconcile, in the DAG being defined."""
    check_params = CheckParamsOperator(task_id="check_params", retries=0)
    tasks = [check_params, create_topics_task(PIPELINE if generate else CONSUMING)]
    if generate:
        tasks.append(call_task(CALLS["generate"], op_kwargs={
            # A run without a data interval (triggered with no logical date) gets the hour before it.
            "start": (
                "{{ data_interval_start | default(dag_run.run_after - macros.timedelta(hours=1), true) }}"
            ),
            "end": "{{ data_interval_end | default(dag_run.run_after, true) }}",
        }))
    tasks += [
        ConsumerLagSensor(
            task_id="wait_for_orders", groups=topology.INPUTS,
            wait_seconds="{{ params.wait_for_orders_seconds }}",
        ),
        call_task(CALLS["process"], check_params.output),
        call_task(CALLS["analyze"], check_params.output),
        sink_task(),
    ]
    tasks.append(reconcile_task(PIPELINE if generate else CONSUMING))
    chain(*tasks)


def stream_tasks() -> None:
    """check_params >> create_topics >> [generate, process, analyze, sink], streaming together
    for ``duration_seconds``, each ending after the one before it (all of its instances, process
    and analyze being ``workers`` mapped instances) >> reconcile."""
    check_params = CheckParamsOperator(task_id="check_params", retries=0)
    streaming = [
        call_task(
            CALLS[name], check_params.output, KafkaStreamOperator, after=after,
            duration_seconds="{{ params.duration_seconds }}",
            commit_interval_ms="{{ params.commit_interval_ms }}",
        )
        for after, name in zip((None, *PIPELINE), PIPELINE)
    ]
    chain(check_params, create_topics_task(PIPELINE), streaming, reconcile_task(PIPELINE))
