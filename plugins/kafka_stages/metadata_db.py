"""A run that has ended stays ended on the SQLite metadata DB (README, "Operations"): installed by
scripts/airflow at each start (`python plugins/kafka_stages/metadata_db.py <db file>`), as an
Airflow upgrade that rebuilds `dag_run` drops it.

Airflow 3.3's scheduler decides a run's state from its task instances (``DagRun.update_state``)
and writes that decision whatever the run's state is by then. On PostgreSQL it holds the run's row
lock meanwhile, and a mark-failed waits; SQLite has no row lock, so a mark-failed that commits in
between is overwritten: with the run read as running and its tasks read after, all skipped, as
``success``; and when the scheduler's transaction failed ("database is locked" after the 5 s busy
timeout) and ``retry_db_transaction`` runs it again, with the run reloaded as ``failed`` and a
try started in it by the mark-failed's race (``refuse_an_ended_run``) still ``running``, as
``running``, its tasks stopped and nothing to end it again. The trigger undoes such a decision: an
update that moves a ``failed`` or ``success`` run to another state and stamps a new
``last_scheduling_decision``, which only ``update_state`` does (a clear to ``queued`` sets it
NULL; a mark-failed or mark-success leaves it).
"""

from __future__ import annotations

import sqlite3
import sys

TRIGGER = """
CREATE TRIGGER IF NOT EXISTS kafka_pipeline_ended_run_stays_ended
AFTER UPDATE OF state ON dag_run
WHEN old.state IN ('failed', 'success') AND new.state IS NOT old.state
  AND new.last_scheduling_decision IS NOT NULL
  AND new.last_scheduling_decision IS NOT old.last_scheduling_decision
BEGIN
  UPDATE dag_run SET state = old.state, start_date = old.start_date, end_date = old.end_date
  WHERE id = new.id;
END
"""


def install(path: str) -> None:
    """The trigger in the SQLite metadata DB at ``path`` (waiting, if a running Airflow writes)."""
    with sqlite3.connect(path, timeout=60) as db:
        db.execute(TRIGGER)


if __name__ == "__main__":
    install(sys.argv[1])
