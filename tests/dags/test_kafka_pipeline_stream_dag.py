"""kafka_pipeline_stream: the same stages as kafka_pipeline, streaming together in one run."""


from airflow.sdk import CronDataIntervalTimetable

from include.pipeline import stages
from kafka_stages.checks import ReconcileOperator
from kafka_stages.operators import KafkaStreamOperator
from kafka_stages.pipeline import MAPPED, POOL
from tests.harness.dag_tasks import arg, is_stage

DAG_ID = "kafka_pipeline_stream"  # the `dag` fixture's (conftest.py)
STREAMING = ["generate", "process", "analyze", "sink"]


def test_hourly_one_run_at_a_time_so_each_hands_over_to_the_next(dag):
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert (dag.timetable.expression, str(dag.timetable.timezone)) == ("0 * * * *", "UTC")
    assert (dag.max_active_runs, dag.catchup, dag.default_args["retries"]) == (1, False, 2)


def test_params_and_defaults(dag):
    assert {name: dag.params[name] for name in dag.params} == {
        "workers": 1, "duration_seconds": 3540, "commit_interval_ms": 100, "rate": 30, "invalid_ratio": 0.05,
        "grace_seconds": 3600, "dedup_horizon_seconds": 86400, "metrics_json_days": 7,
    }


def test_the_four_stages_stream_together_between_create_topics_and_reconcile(dag):
    assert sorted(dag.task_ids) == sorted(["check_params", "create_topics", *STREAMING, "reconcile"])
    # process and analyze are mapped over what check_params returns (range(workers)).
    assert dag.get_task("check_params").downstream_task_ids == {"create_topics", *MAPPED}
    assert dag.get_task("create_topics").downstream_task_ids == set(STREAMING)
    for name in STREAMING:
        assert dag.get_task(name).downstream_task_ids == {"reconcile"}
    reconcile = dag.get_task("reconcile")
    assert isinstance(reconcile, ReconcileOperator) and reconcile.retries == 0
    assert reconcile.results == {name: f"{{{{ ti.xcom_pull(task_ids='{name}') }}}}" for name in STREAMING}


def test_each_stage_follows_its_topic_and_ends_after_the_one_before_it(dag):
    tasks = [dag.get_task(name) for name in STREAMING]
    assert all(is_stage(task, KafkaStreamOperator) for task in tasks)
    assert [task.task_id for task in tasks if task.is_mapped] == list(MAPPED)
    assert [arg(t, "stage") for t in tasks] == [stages.generate, stages.process, stages.analyze, stages.sink]
    assert [arg(t, "after") for t in tasks] == [None, "generate", "process", "analyze"]
    assert {(task.pool, task.pool_slots) for task in tasks} == {(POOL, 1)}
    for task in tasks:
        assert arg(task, "duration_seconds") == "{{ params.duration_seconds }}"
        assert arg(task, "commit_interval_ms") == "{{ params.commit_interval_ms }}"
    assert tasks[0].op_kwargs == {"rate": "{{ params.rate }}", "invalid_ratio": "{{ params.invalid_ratio }}"}
    assert arg(tasks[1], "op_kwargs") == {"workers": "{{ params.workers }}"}
    assert arg(tasks[2], "op_kwargs") == {
        "grace_seconds": "{{ params.grace_seconds }}",
        "dedup_horizon_seconds": "{{ params.dedup_horizon_seconds }}",
        "workers": "{{ params.workers }}",
    }
    assert tasks[3].op_kwargs == {"metrics_json_days": "{{ params.metrics_json_days }}"}
    assert tasks[3].metrics_db_conn_id == "metrics_db"
