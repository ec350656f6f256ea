"""The operators of the pipeline's stages, bounded or streaming (the run's checks: ``checks``)."""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Callable

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from include.pipeline.domain.assignment import Assignment
from include.pipeline.kafka_io.reading import Follow
from include.pipeline.metrics.push import push
from include.pipeline.run import params as run_params
from include.pipeline.run import summary as stage_summary
from include.pipeline.run.results import (
    Result,
    xcom,
)
from include.pipeline.stages import shutdown
from kafka_stages import lineage
from kafka_stages.hooks import MetricsDbHook, PipelineKafkaHook

# Set by scripts/airflow when `tasks test` runs a mapped stage without --map-index: the one
# instance it runs then reads every partition, as the stage did before it was mapped.
ALL_PARTITIONS = "KAFKA_PIPELINE_ALL_PARTITIONS"
ENDED = frozenset({"failed", "success"})  # the states of a run that has ended
# A streaming try asks for its run's state every RUN_STATE_EVERY seconds over its first
# RUN_STATE_FOR (``KafkaStreamOperator``): a mark-failed that its start raced with, and missed it,
# answered by then; a later one finds the try running and stops it itself.
RUN_STATE_EVERY, RUN_STATE_FOR = 3.0, 30.0
RUN_ENDED = "its run "  # how the stop's reason starts when the run has ended under the stage


def cli_task_params() -> dict[str, Any]:
    """The params given with ``-t`` to ``airflow tasks test`` in this process; {} in any other (a
    worker, ``dags test``). Read from the command line, with the CLI's own parser: by the time a
    task runs, Airflow 3.3 has merged the run's conf into the task's own Param objects in place
    (``process_params``), so ``task.params`` no longer holds an overridden ``-t`` value."""
    if sys.argv[1:3] != ["tasks", "test"]:
        return {}
    from airflow.cli.cli_parser import get_parser  # already loaded: this process is the CLI

    given = get_parser().parse_args(sys.argv[1:]).task_params
    return json.loads(given) if given else {}


def refuse_an_ended_run(task_id: str, context) -> None:
    """Fail a try that Airflow started in a run that had already ended (marked failed or success).

    On SQLite, a mark-failed and a try's start at the same moment can end that way: the API
    server's start of the try (``PATCH /execution/task-instances/<id>/run``) reads the task as
    queued, waits for the database's write lock while the mark-failed holds it, then sets the
    task running in the run that has just failed, over the mark-failed's ``skipped``. PostgreSQL's
    row lock (the start's ``SELECT ... FOR UPDATE``) keeps the two apart; SQLite has none. Nothing
    would stop such a try: its heartbeats find it running, and a stream stage would stream on for
    the rest of ``duration_seconds``, holding its pool slot. The start read the run after that
    write, so the run's state the try got with it says so
    (docs/operations/stopping-and-recovering.md). ``airflow tasks test`` runs a task whatever its
    run's state (a date whose run has ended): not refused there."""
    run = context["dag_run"]
    state = getattr(run.state, "value", run.state)  # an enum from the API
    if state in ENDED and sys.argv[1:3] != ["tasks", "test"]:
        raise AirflowFailException(f"{task_id}: its run {run.run_id} is {state}, marked so as this try began")


def push_metrics(task: BaseOperator, context, stage: str | None) -> None:
    """The task's metrics (those of ``stage``, the task's; None: reconcile's, of the run) to the
    Pushgateway, if one is configured (PIPELINE_PUSHGATEWAY_URL), grouped by DAG, task and map
    index (-1: not mapped); a gateway that does not answer is one line in the log, never the
    task's failure."""
    push(task.dag_id, task.task_id, context["ti"].map_index, stage)


def log_params_overridden(task: BaseOperator, context) -> None:
    """Under ``airflow tasks test ... -t`` on a date that has a run, say in one line which ``-t``
    params that run's conf overrode and the values used (``run_params.overridden``): Airflow
    lets the conf win without a word. The ``pre_execute`` of every operator that reads params."""
    if given := cli_task_params():
        conf = context["dag_run"].conf or {}
        if line := run_params.overridden(given, context["params"], conf, context["run_id"]):
            task.log.warning("%s", line)


class KafkaStageOperator(BaseOperator):
    """Runs one stage of ``include.pipeline.stages`` against the cluster of a Kafka connection.

    The stock ProduceToTopicOperator / ConsumeFromTopicOperator (provider 2.1.0) let a failed
    delivery pass and commit asynchronously; the stages use transactions and synchronous
    commits instead, so a lost record fails the task. The stage's result
    (``include.pipeline.run.results``) becomes the XCom. A ``ValueError`` (a bad argument or a
    record that breaks the contract) fails the task without retries: it would fail every attempt
    the same way.

    :param stage: the stage function; called with a ``Kafka`` and ``op_kwargs``.
    :param op_kwargs: its keyword arguments (templated).
    :param kafka_config_id: the Airflow connection of the cluster.
    :param metrics_db_conn_id: for a stage that writes the metrics store (``store=``): its
        connection (``MetricsDbHook``). The store is made at run time, so no credential is
        ever rendered into the task's fields.
    :param worker: a mapped instance's index (``expand(worker=...)``): it reads its share of the
        input's partitions, of ``op_kwargs["workers"]`` instances (``include.pipeline.domain.assignment``).
    """

    template_fields = ("op_kwargs",)
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        stage: Callable[..., Result],
        op_kwargs: dict[str, Any] | None = None,
        kafka_config_id: str = "kafka_default",
        metrics_db_conn_id: str | None = None,
        worker: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.stage = stage
        self.op_kwargs = op_kwargs or {}
        self.kafka_config_id = kafka_config_id
        self.metrics_db_conn_id = metrics_db_conn_id
        self.worker = worker

    def pre_execute(self, context) -> None:
        """Says which ``airflow tasks test -t`` params the run's conf overrode."""
        log_params_overridden(self, context)

    def stage_kwargs(self, context) -> dict[str, Any]:
        """The keyword arguments the stage is called with in this run, besides the Kafka and the store."""
        kwargs = dict(self.op_kwargs)
        if self.worker is None:
            return kwargs
        if os.environ.get(ALL_PARTITIONS):
            share = Assignment()
        else:
            workers = int(kwargs["workers"])
            if self.worker >= workers:  # only `tasks test --map-index` can ask for one
                raise AirflowSkipException(f"no instance {self.worker} with workers={workers}")
            share = Assignment(workers, self.worker)
        self.log.info("instance %d: %s", self.worker, share)
        return {**kwargs, "workers": share.workers, "worker": share.index}

    def execute(self, context) -> dict | None:
        """Runs the stage; its result is the XCom. A stop on request fails the task, with no XCom.
        Its metrics are pushed after it, whether it succeeded or not."""
        try:
            return self.run_stage(context)
        finally:
            push_metrics(self, context, self.task_id)  # a stage task is named after its stage

    def run_stage(self, context) -> dict | None:
        """The stage, its summary logged, its result as the XCom."""
        refuse_an_ended_run(self.task_id, context)
        # SIGTERM (Airflow stopping the task: the run marked failed, a lost heartbeat, standalone
        # stopping), SIGINT and a supervisor that died all end the stage between two batches.
        with shutdown.supervised():
            try:
                kafka = PipelineKafkaHook(self.kafka_config_id).get_kafka()
                self.ran = lineage.Ran(bootstrap=kafka.config["bootstrap.servers"])
                kwargs = self.stage_kwargs(context)
                if self.metrics_db_conn_id:
                    store = MetricsDbHook(self.metrics_db_conn_id).get_store()
                    self.log.info("metrics store: %s (%s)", store.name, store.origin)
                    self.ran.store = store.url
                    self.warn_of_another_store(store)
                    result = self.stage(kafka, store=store, **kwargs)
                else:
                    result = self.stage(kafka, **kwargs)
            except ValueError as exc:
                raise AirflowFailException(f"{self.task_id}: {exc}") from exc
            except shutdown.Stopped:
                result = None
            self.ran.result = result
            if result is not None:
                for line in stage_summary.lines(self.stage.__name__, result):
                    self.log.info("%s", line)
            if shutdown.requested():
                if shutdown.reason().startswith(RUN_ENDED):  # no retry: the run is over
                    raise AirflowFailException(f"{self.task_id} stopped ({shutdown.reason()})")
                # No XCom: reconcile must never take a stage's part for the whole.
                raise AirflowException(
                    f"{self.task_id} stopped ({shutdown.reason()}): "
                    "every transaction it committed stays, the one in flight was committed or aborted; "
                    "a retry or the next run continues from there"
                )
        return xcom(result)

    def warn_of_another_store(self, store) -> None:
        """Say so when the store this task writes is not the one its outlet names: the outlet's
        URI comes from the DAG processor's environment (``lineage``), the store from the
        connection, wherever it is kept."""
        wrote = lineage.store_uri(store.url)
        declared = [asset.uri for asset in self.outlets if getattr(asset, "uri", "").split(":")[0] != "kafka"]
        if declared and wrote not in declared:
            self.log.warning(
                "this task's outlet asset names the store %s, but it writes %s: set AIRFLOW_CONN_METRICS_DB "
                "in the DAG processor's environment too, so that the asset names the store (docs/"
                "operations/observability.md)", declared[0], wrote,
            )

    def get_openlineage_facets_on_complete(self, task_instance):
        """What the stage read and wrote, named by OpenLineage's naming (Kafka: ``kafka://host:port``
        and the topic; the store: ``postgres://host:port`` and ``database.schema.table``, or the
        SQLite file), with the records each stage's result counts; from the connections this try
        used, so right wherever they are kept."""
        from airflow.providers.openlineage.extractors import OperatorLineage

        ran = getattr(self, "ran", None)
        if ran is None or ran.result is None:
            return OperatorLineage()
        inputs, outputs = ran.datasets(self.task_id)
        return OperatorLineage(inputs=inputs, outputs=outputs)


class KafkaStreamOperator(KafkaStageOperator):
    """Runs a stage continuously (``kafka_io.reading.Follow``: a transaction every
    ``commit_interval_ms`` or full batch) for ``duration_seconds``; then, once the stage before it
    (``after``) has finished, it reads what that stage wrote up to its end and returns. Each stage
    so hands a complete input over to the next, and reconcile sees counts that add up.

    :param duration_seconds: how long the stage follows its topic (templated).
    :param commit_interval_ms: the longest a batch collects records before its transaction
        commits (templated).
    :param after: the task id of the stage upstream in the same run; None for the first.
    """

    template_fields = (*KafkaStageOperator.template_fields, "duration_seconds", "commit_interval_ms")
    ui_color = "#d2e3fc"
    # An upstream in none of these states will write nothing more: done, failed, or not part of
    # this run at all (the stage run alone with `airflow tasks test`).
    GOING = frozenset(
        {"scheduled", "queued", "running", "up_for_retry", "up_for_reschedule", "deferred", "restarting"}
    )

    def __init__(
        self, *, duration_seconds: Any, commit_interval_ms: Any = 100, after: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.duration_seconds, self.commit_interval_ms, self.after = (
            duration_seconds, commit_interval_ms, after
        )

    def run_ended(self, ti, run_id: str) -> str | None:
        """The run's state if it has ended, else ""; None when the API did not answer (the
        heartbeats are what stops a try then: it asks no more, so as not to hold its supervisor)."""
        try:
            state = ti.get_dagrun_state(dag_id=self.dag_id, run_id=run_id)
        except Exception as exc:  # whatever the supervisor relays
            self.log.warning("the state of run %s: no answer (%s); not asking again", run_id, exc)
            return None
        state = getattr(state, "value", state)
        return state if state in ENDED else ""

    def stage_kwargs(self, context) -> dict[str, Any]:
        """Adds the ``Follow`` that ends the stage once its time is up and the stage before it is done."""
        ti, run_id = context["ti"], context["run_id"]
        # A retry counts from the run's start, so that it ends with the others and the run keeps
        # its hour; a first try (or the stage run alone with `airflow tasks test`) from now.
        started = context["dag_run"].start_date if ti.try_number > 1 else None
        ends = (started.timestamp() if started else time.time()) + float(self.duration_seconds)
        upstream = {"finished": self.after is None, "asked": 0.0}
        # The try's start has just read the run (refuse_an_ended_run); `tasks test` runs a task
        # whatever its run's state.
        run = {"asked": time.monotonic(), "until": time.monotonic() + RUN_STATE_FOR}
        if sys.argv[1:3] == ["tasks", "test"]:
            run["until"] = 0.0

        def finish() -> bool:  # asked between batches; the API at most once a second
            now = time.monotonic()
            if now < run["until"] and now - run["asked"] >= RUN_STATE_EVERY:
                run["asked"] = now
                if ended := self.run_ended(ti, run_id):  # a mark-failed that missed this try
                    shutdown.request(f"{RUN_ENDED}{run_id} is {ended}")
                    return False
                if ended is None:
                    run["until"] = 0.0
            if time.time() < ends:
                return False
            if not upstream["finished"] and now - upstream["asked"] >= 1:
                upstream["asked"] = now
                states = ti.get_task_states(dag_id=self.dag_id, task_ids=[self.after], run_ids=[run_id])
                # A mapped upstream's instances are "<task>_<map index>": finished when all are.
                mine = [state for task, state in states.get(run_id, {}).items()
                        if task == self.after or task.startswith(f"{self.after}_")]
                upstream["finished"] = not any(state in self.GOING for state in mine)
                if upstream["finished"]:
                    self.log.info("%s has finished: reading what it wrote, then stopping", self.after)
            return upstream["finished"]

        self.log.info(
            "following its topic for %ss, then %s", round(ends - time.time()),
            f"until {self.after} has finished and what it wrote is read" if self.after else "stopping",
        )
        follow = Follow(interval=float(self.commit_interval_ms) / 1000, finish=finish)
        return {**super().stage_kwargs(context), "follow": follow}
