from datetime import timedelta
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk import CronDataIntervalTimetable

from include.pipeline import stages

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag():
    return DagBag(dag_folder=str(DAGS))


@pytest.fixture(scope="module")
def dag(dagbag):
    return dagbag.dags["kafka_pipeline"]


def test_dags_import_cleanly(dagbag):
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dag_ids) == ["kafka_pipeline", "kafka_pipeline_replay"]


def test_hourly_data_interval_schedule_one_run_at_a_time(dag):
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert (dag.timetable.expression, str(dag.timetable.timezone)) == ("0 * * * *", "UTC")
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.default_args["retries"] == 2
    assert set(dag.tags) == {"kafka", "orders", "example"}


def test_params_and_defaults(dag):
    assert {name: dag.params[name] for name in dag.params} == {
        "orders": 2000, "rate": 0, "invalid_ratio": 0.05, "seed": None,
        "grace_seconds": 3600, "dedup_horizon_seconds": 86400,
    }


def test_task_graph_is_a_chain_of_the_stages(dag):
    order = ["create_topics", "generate", "process", "analyze", "sink", "reconcile"]
    assert sorted(dag.task_ids) == sorted(order)
    for upstream, downstream in zip(order, order[1:]):
        assert dag.get_task(upstream).downstream_task_ids == {downstream}
    assert dag.get_task("reconcile").downstream_task_ids == set()
    assert dag.get_task("reconcile").retries == 0


def test_each_stage_task_runs_its_include_function(dag):
    assert {t: dag.get_task(t).stage for t in ("create_topics", "generate", "process", "analyze", "sink")} == {
        "create_topics": stages.create_topics,
        "generate": stages.generate,
        "process": stages.process,
        "analyze": stages.analyze,
        "sink": stages.sink,
    }
    assert all(dag.get_task(t).kafka_config_id == "kafka_default" for t in ("process", "analyze", "sink"))
    assert dag.get_task("generate").retry_delay == timedelta(seconds=30)


def test_generate_gets_the_params_and_the_data_interval(dag):
    assert dag.get_task("generate").op_kwargs == {
        "orders": "{{ params.orders }}",
        "rate": "{{ params.rate }}",
        "invalid_ratio": "{{ params.invalid_ratio }}",
        "seed": "{{ run_id if params.seed is none else params.seed }}",
        "start": "{{ data_interval_start }}",
        "end": "{{ data_interval_end }}",
    }
    assert dag.render_template_as_native_obj is True


def test_analyze_gets_the_grace_period_and_dedup_horizon(dag):
    assert dag.get_task("analyze").op_kwargs == {
        "grace_seconds": "{{ params.grace_seconds }}",
        "dedup_horizon_seconds": "{{ params.dedup_horizon_seconds }}",
    }


def test_replay_dag_rebuilds_then_sinks(dagbag):
    replay = dagbag.dags["kafka_pipeline_replay"]
    assert replay.schedule is None  # triggered by hand, with the range
    assert [t.task_id for t in replay.topological_sort()] == ["replay", "sink"]
    assert replay.get_task("replay").stage is stages.replay
    assert {name: replay.params[name] for name in replay.params} == {
        "start": "2026-01-05T09:00:00+00:00", "end": "2026-01-05T10:00:00+00:00", "allow_partial": False,
    }
