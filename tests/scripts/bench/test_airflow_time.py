"""Where a run's time goes: the phases of each task instance from the metadata DB's stamps and the
task runner's log groups, on a home built here (the tables' columns the module reads, and logs in
Airflow's layout), with every figure worked out by hand."""

import json
import sqlite3

import pytest

from scripts.bench.airflow_time import render, run_time

RUN = "manual__2026-01-05T10:00:00+00:00"


def stamp(second: float) -> str:
    """The metadata DB's UTC stamp ``second`` seconds after 10:00:00."""
    return f"2026-01-05 10:00:{second:09.6f}"


def log_line(second: float, event: str) -> str:
    return json.dumps({"timestamp": f"2026-01-05T10:00:{second:09.6f}Z", "event": event})


@pytest.fixture
def home(tmp_path):
    db = sqlite3.connect(tmp_path / "airflow.db")
    db.execute("CREATE TABLE dag_run (dag_id, run_id, start_date, end_date)")
    db.execute(
        "CREATE TABLE task_instance (dag_id, run_id, task_id, map_index, try_number, scheduled_dttm,"
        " queued_dttm, start_date, end_date)"
    )
    db.execute("INSERT INTO dag_run VALUES ('kafka_pipeline', ?, ?, ?)", (RUN, stamp(1), stamp(20)))
    # task, map index, try, scheduled, queued, running, execute begins, execute ends, ended
    instances = [
        ("check_params", -1, 1, 1.5, 2.0, 2.5, 3.0, 3.25, 3.5),
        ("process", 0, 1, 4.0, 4.5, 5.0, 6.0, 10.0, 10.5),
        ("process", 1, 2, 4.0, 4.75, 5.5, 6.5, 12.0, 12.25),  # a second try: its log is attempt=2
        ("reconcile", -1, 1, 13.0, None, 14.0, 14.5, 15.0, 16.0),  # dags test: no queued stamp
    ]
    for task, index, try_number, scheduled, queued, running, began, ended, end in instances:
        db.execute(
            "INSERT INTO task_instance VALUES ('kafka_pipeline', ?, ?, ?, ?, ?, ?, ?, ?)",
            (RUN, task, index, try_number, stamp(scheduled), None if queued is None else stamp(queued),
             stamp(running), stamp(end)),
        )
        folder = tmp_path / "logs" / "dag_id=kafka_pipeline" / f"run_id={RUN}" / f"task_id={task}"
        if index >= 0:
            folder = folder / f"map_index={index}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"attempt={try_number}.log").write_text("\n".join([
            log_line(running + 0.1, "::group::Pre Execute"), log_line(running + 0.2, "DAG file parsed"),
            log_line(began, "::endgroup::"), log_line(began + 0.01, "stage at work"),
            log_line(ended, "::group::Post Execute"), log_line(ended + 0.01, "::endgroup::"),
        ]) + "\n")
    db.execute("INSERT INTO task_instance VALUES ('kafka_pipeline', ?, 'sink', -1, 0, NULL, NULL, ?, ?)",
               (RUN, stamp(16), stamp(16)))  # skipped without running: not a task that ran
    db.commit()
    db.close()
    return tmp_path


def phases(run):
    """Task -> its phases and end, to the microsecond the stamps have."""
    return {
        t.task: tuple(round(v, 6) for v in (t.wait, t.queued, t.start, t.stage, t.end, t.ended_at))
        for t in run.tasks
    }


def test_each_task_instance_s_phases_from_its_stamps_and_its_log(home):
    run = run_time(home, "kafka_pipeline", RUN)
    assert phases(run) == {
        "check_params": (1.0, 0.5, 0.5, 0.25, 0.25, 2.5),  # waited from the run's start, 1.0
        "process[0]": (1.0, 0.5, 1.0, 4.0, 0.5, 9.5),  # queued at 4.5, after check_params's end, 3.5
        "process[1]": (1.25, 0.75, 1.0, 5.5, 0.25, 11.25),
        "reconcile": (0.75, 1.0, 0.5, 0.5, 1.0, 15.0),  # its scheduled stamp for queued; after 12.25
    }
    assert run.seconds == pytest.approx(19.0)
    assert run.tail == pytest.approx(4.0)
    assert [t.task for t in run.critical()] == ["check_params", "process[1]", "reconcile"]
    assert run.stage_seconds() == pytest.approx(0.25 + 5.5 + 0.5)
    assert run.airflow_seconds() == pytest.approx(19.0 - 6.25)
    assert "run 19.00s: stages 6.25s, Airflow 12.75s (tail 4.00s)" in render(run)


def test_a_given_start_replaces_the_run_s_start_date(home):
    """`dags test` stamps a run's start with its logical date: the bench gives its command's start."""
    started = run_time(home, "kafka_pipeline", RUN).tasks[0]
    given = run_time(home, "kafka_pipeline", RUN, started_at=1767607200.0 + 0.5)  # 10:00:00.5 UTC
    assert given.seconds == pytest.approx(19.5)
    assert given.tasks[0].wait == pytest.approx(started.wait + 0.5)
