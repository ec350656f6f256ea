import sqlite3

import pytest

from kafka_stages import metadata_db

BEGAN, ENDED, LATER = "2026-01-05 10:00:00", "2026-01-05 10:05:00", "2026-01-05 10:05:01"


@pytest.fixture
def db(tmp_path):
    """The columns of Airflow's dag_run the trigger reads and writes, with the trigger installed
    (twice: scripts/airflow installs it at each start)."""
    path = tmp_path / "airflow.db"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE dag_run (id INTEGER PRIMARY KEY, state TEXT, start_date TEXT, "
                      "end_date TEXT, last_scheduling_decision TEXT)")
    metadata_db.install(str(path))
    metadata_db.install(str(path))
    with sqlite3.connect(path) as conn:
        yield conn


def run_of(db, state: str, end: str | None = ENDED):
    db.execute("DELETE FROM dag_run")
    db.execute("INSERT INTO dag_run VALUES (1, ?, ?, ?, ?)", (state, BEGAN, end, BEGAN))


def run(db) -> tuple:
    return db.execute("SELECT state, start_date, end_date FROM dag_run").fetchone()


@pytest.mark.parametrize("decided", ["running", "success"])
def test_a_scheduling_decision_over_a_run_marked_failed_is_undone(db, decided):
    # update_state's write, decided from tasks read after the mark-failed committed
    run_of(db, "failed")
    updated = db.execute(
        "UPDATE dag_run SET state = ?, start_date = ?, end_date = NULL, last_scheduling_decision = ? "
        "WHERE id = 1", (decided, LATER, LATER),
    ).rowcount
    assert updated == 1  # as the ORM expects: no StaleDataError for the scheduler
    assert run(db) == ("failed", BEGAN, ENDED)


def test_marking_an_ended_run_and_clearing_it_stand(db):
    run_of(db, "failed")
    db.execute("UPDATE dag_run SET state = 'success', end_date = ? WHERE id = 1", (LATER,))
    assert run(db) == ("success", BEGAN, LATER)
    db.execute("UPDATE dag_run SET state = 'queued', start_date = NULL, last_scheduling_decision = NULL")
    assert run(db) == ("queued", None, LATER)


def test_the_schedulers_decisions_on_a_running_run_stand(db):
    run_of(db, "running", end=None)
    db.execute("UPDATE dag_run SET state = 'failed', end_date = ?, last_scheduling_decision = ?",
               (LATER, LATER))
    assert run(db) == ("failed", BEGAN, LATER)
