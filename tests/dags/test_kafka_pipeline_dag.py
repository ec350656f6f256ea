import ast
from datetime import timedelta
from pathlib import Path

from airflow.dag_processing.dagbag import DagBag
from airflow.sdk import CronDataIntervalTimetable

from include.pipeline import stages
from include.pipeline.kafka_io import access
from kafka_stages.operators import KafkaStreamOperator
from kafka_stages.pipeline import MAPPED, POOL, POOL_SLOTS
from kafka_stages.sensors import ConsumerLagSensor
from tests.harness.dag_tasks import arg, is_stage

DAGS = Path(__file__).resolve().parents[2] / "dags"


DAG_ID = "kafka_pipeline"  # the `dag` fixture's (conftest.py)


def test_dags_import_cleanly(dagbag):
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dag_ids) == [
        "kafka_pipeline", "kafka_pipeline_on_orders", "kafka_pipeline_replay", "kafka_pipeline_stream",
    ]


def test_hourly_data_interval_schedule_one_run_at_a_time(dag):
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert (dag.timetable.expression, str(dag.timetable.timezone)) == ("0 * * * *", "UTC")
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.default_args["retries"] == 2
    assert set(dag.tags) == {"kafka", "orders", "example"}


def test_params_and_defaults(dag):
    assert {name: dag.params[name] for name in dag.params} == {
        "orders": 2000, "rate": 0, "invalid_ratio": 0.05, "seed": None, "workers": 1,
        "wait_for_orders_seconds": 0, "grace_seconds": 3600, "dedup_horizon_seconds": 86400,
        "metrics_json_days": 7,
    }


def test_task_graph_is_a_chain_of_the_stages(dag):
    order = [
        "check_params", "create_topics", "generate", "wait_for_orders", "process", "analyze", "sink",
        "reconcile",
    ]
    assert sorted(dag.task_ids) == sorted(order)
    for upstream, downstream in zip(order, order[1:]):
        # The mapped stages also follow check_params: they are mapped over what it returns.
        also = set(MAPPED) if upstream == "check_params" else set()
        assert dag.get_task(upstream).downstream_task_ids == {downstream, *also}
    assert dag.get_task("reconcile").downstream_task_ids == set()
    assert dag.get_task("reconcile").retries == 0
    assert dag.get_task("check_params").retries == 0  # a mistake in the params fails at once


def test_each_stage_task_runs_its_include_function(dag):
    assert {
        t: arg(dag.get_task(t), "stage") for t in ("create_topics", "generate", "process", "analyze", "sink")
    } == {
        "create_topics": stages.create_topics,
        "generate": stages.generate,
        "process": stages.process,
        "analyze": stages.analyze,
        "sink": stages.sink,
    }
    for task_id in ("process", "analyze", "sink"):
        assert arg(dag.get_task(task_id), "kafka_config_id") == "kafka_default"
    assert dag.get_task("generate").retry_delay == timedelta(seconds=30)


def test_the_mapped_stages_run_as_workers_instances_mapped_over_what_check_params_returns(dagbag):
    for dag_id in ("kafka_pipeline", "kafka_pipeline_on_orders"):
        dag = dagbag.dags[dag_id]
        assert sorted(t.task_id for t in dag.tasks if t.is_mapped) == sorted(MAPPED), dag_id
        for task_id in MAPPED:
            task = dag.get_task(task_id)
            (plan,) = task.expand_input.value.values()
            assert (plan.operator.task_id, list(task.expand_input.value)) == ("check_params", ["worker"])
            assert arg(task, "op_kwargs")["workers"] == "{{ params.workers }}"
        assert dag.get_task("create_topics").op_kwargs["workers"] == "{{ params.workers | default(1) }}"
    # scripts/airflow runs these alone (`tasks test` without --map-index) as one instance.
    script = (DAGS.parent / "scripts/airflow").read_text()
    assert f'mapped_stages=" {" ".join(MAPPED)} "' in script


def test_generate_gets_the_params_and_the_data_interval(dag):
    assert dag.get_task("generate").op_kwargs == {
        "orders": "{{ params.orders }}",
        "rate": "{{ params.rate }}",
        "invalid_ratio": "{{ params.invalid_ratio }}",
        "seed": "{{ run_id if params.seed is none else params.seed }}",
        "start": "{{ data_interval_start | default(dag_run.run_after - macros.timedelta(hours=1), true) }}",
        "end": "{{ data_interval_end | default(dag_run.run_after, true) }}",
    }
    assert dag.render_template_as_native_obj is True


def test_analyze_gets_the_grace_period_and_dedup_horizon(dag):
    assert arg(dag.get_task("analyze"), "op_kwargs") == {
        "grace_seconds": "{{ params.grace_seconds }}",
        "dedup_horizon_seconds": "{{ params.dedup_horizon_seconds }}",
        "workers": "{{ params.workers }}",
    }


def test_the_sinks_write_the_store_of_the_metrics_db_connection_and_export_the_params_days(dagbag):
    for dag_id in ("kafka_pipeline", "kafka_pipeline_on_orders", "kafka_pipeline_replay"):
        sink = dagbag.dags[dag_id].get_task("sink")
        assert (sink.stage, sink.metrics_db_conn_id) == (stages.sink, "metrics_db")
        assert sink.op_kwargs == {"metrics_json_days": "{{ params.metrics_json_days }}"}
        assert dagbag.dags[dag_id].params["metrics_json_days"] == 7
    assert arg(dagbag.dags["kafka_pipeline"].get_task("process"), "metrics_db_conn_id") is None


def test_replay_dag_rebuilds_then_sinks(dagbag):
    replay = dagbag.dags["kafka_pipeline_replay"]
    assert replay.schedule is None  # triggered by hand, with the range
    assert replay.get_task("replay").stage is stages.replay
    assert {name: replay.params[name] for name in replay.params} == {
        "start": "2026-01-05T09:00:00+00:00", "end": "2026-01-05T10:00:00+00:00", "allow_partial": False,
        "metrics_json_days": 7,
    }
    assert [t.task_id for t in replay.topological_sort()] == ["check_params", "replay", "sink"]


def test_the_sensor_waits_for_work_on_every_consuming_stage_input(dag):
    sensor = dag.get_task("wait_for_orders")
    assert isinstance(sensor, ConsumerLagSensor)
    assert sensor.groups == {
        "orders": "kafka-pipeline-process", "processed-orders": "kafka-pipeline-analyze",
        "product-metrics": "kafka-pipeline-sink",
    }
    assert sensor.wait_seconds == "{{ params.wait_for_orders_seconds }}"


def test_the_event_driven_dag_watches_orders_lag_and_shares_the_task_chain(dagbag, dag):
    on_orders = dagbag.dags["kafka_pipeline_on_orders"]
    (asset,) = on_orders.timetable.asset_condition.objects
    # Named by its URI, as every asset of the pipeline (kafka_stages.lineage): process's inlet.
    assert (asset.name, asset.uri) == ("kafka://127.0.0.1:9092/orders", "kafka://127.0.0.1:9092/orders")
    (watcher,) = asset.watchers
    assert watcher.trigger.serialize() == ("kafka_stages.triggers.ConsumerLagTrigger", {
        "groups": {"orders": "kafka-pipeline-process"}, "min_records": 10000, "max_wait_seconds": 300.0,
        "give_up_after_seconds": None, "poll_interval": 2.0, "kafka_config_id": "kafka_default",
    })
    assert on_orders.max_active_runs == 1
    assert {name: on_orders.params[name] for name in on_orders.params} == {
        "workers": 1, "wait_for_orders_seconds": 0, "grace_seconds": 3600, "dedup_horizon_seconds": 86400,
        "metrics_json_days": 7,
    }
    order = ["check_params", "create_topics", "wait_for_orders", "process", "analyze", "sink", "reconcile"]
    assert [t.task_id for t in on_orders.topological_sort()] == order
    for task_id in order[:-1]:
        mine, theirs = on_orders.get_task(task_id), dag.get_task(task_id)
        assert type(mine) is type(theirs)
        if task_id not in ("check_params", "create_topics"):  # which stages' ACLs it checks: below
            assert arg(mine, "op_kwargs") == arg(theirs, "op_kwargs")
        assert arg(mine, "stage") == arg(theirs, "stage")
    assert set(on_orders.get_task("reconcile").results) == {"process", "analyze", "sink"}


def test_the_watcher_thresholds_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("KAFKA_PIPELINE_ON_ORDERS_MIN_RECORDS", "250")
    monkeypatch.setenv("KAFKA_PIPELINE_ON_ORDERS_MAX_WAIT_SECONDS", "12.5")
    on_orders = DagBag(dag_folder=str(DAGS / "kafka_pipeline_on_orders.py")).dags["kafka_pipeline_on_orders"]
    ((watcher,),) = [asset.watchers for asset in on_orders.timetable.asset_condition.objects]
    assert (watcher.trigger.min_records, watcher.trigger.max_wait_seconds) == (250, 12.5)
    monkeypatch.setenv("KAFKA_PIPELINE_ON_ORDERS_MIN_RECORDS", "lots")
    errors = DagBag(dag_folder=str(DAGS / "kafka_pipeline_on_orders.py")).import_errors
    assert [
        line for e in errors.values() for line in e.splitlines() if "KAFKA_PIPELINE" in line
    ][-1].endswith("KAFKA_PIPELINE_ON_ORDERS_MIN_RECORDS must be a int >= 1, got 'lots'")


def test_every_kafka_stage_of_every_dag_queues_for_the_one_pool_later_stages_first(dagbag):
    stage_tasks = [t for d in dagbag.dags.values() for t in d.tasks if is_stage(t)]
    assert len(stage_tasks) == 5 + 4 + 2 + 5
    assert {t.pool for t in stage_tasks} == {POOL}
    # A bounded task that is not mapped takes the whole pool; a mapped instance, or a stream
    # run's stage, one slot: a stream run's four stages with an instance per partition fit.
    streaming = [t for t in stage_tasks if is_stage(t, KafkaStreamOperator)]
    assert sorted(t.task_id for t in streaming) == ["analyze", "generate", "process", "sink"]
    assert {t.pool_slots for t in streaming} == {1} and POOL_SLOTS == 4 * 6
    assert {t.pool_slots for t in stage_tasks if t.is_mapped} == {1}
    assert sorted(t.task_id for t in streaming if t.is_mapped) == sorted(MAPPED)
    assert {t.pool_slots for t in stage_tasks if t not in streaming and not t.is_mapped} == {POOL_SLOTS}
    assert {(t.task_id, t.priority_weight, t.weight_rule) for t in stage_tasks} == {
        ("create_topics", 1, "absolute"), ("generate", 2, "absolute"), ("process", 3, "absolute"),
        ("replay", 4, "absolute"), ("analyze", 4, "absolute"), ("sink", 5, "absolute"),
    }


def test_dag_policy(dagbag):
    for dag_id, each in dagbag.dags.items():
        assert each.doc_md and each.doc_md.startswith(f"{dag_id}:"), dag_id
        assert each.tags and "kafka" in each.tags, dag_id
        assert each.max_active_runs == 1, dag_id
        assert each.catchup is False, dag_id
        assert each.render_template_as_native_obj is True, dag_id
        assert "check_params" in each.task_ids and not each.get_task("check_params").upstream_task_ids, dag_id


def test_include_has_no_airflow_imports():
    for path in sorted((DAGS.parent / "include").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )
            assert not [n for n in names if n.split(".")[0] == "airflow"], path


def test_each_dags_first_kafka_task_checks_the_acls_of_exactly_its_stages(dagbag):
    """access.USERS (the ACL table of docs/reference/kafka-acls.md) names each DAG's stages;
    create_topics checks theirs."""
    for dag_id, needs in access.USERS.items():
        if dag_id == "metrics_page":
            continue
        dag = dagbag.dags[dag_id]
        kafka_tasks = [t.task_id for t in dag.topological_sort() if is_stage(t)]
        assert sorted(kafka_tasks) == sorted(needs)
        if "create_topics" in needs:
            checked = dag.get_task("create_topics").op_kwargs["stages"]
            assert checked == [t for t in needs if t != "create_topics"]
