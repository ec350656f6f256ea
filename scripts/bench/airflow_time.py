"""Where a DAG run's time goes, task by task: from the metadata DB (when each task instance was
scheduled, queued, started and ended) and its log (when its operator's execute began and ended).

Per task instance, in the order they ran:
  - wait: from the run's start, or the end of the last task instance that ended before this one
    was queued, to its queueing (the scheduler's loop, or dags test's);
  - queued: queued to running (the executor picks it up and its supervisor starts);
  - start: running to its operator's execute (the task process: parsing the DAG file, the context);
  - stage: the operator's execute (the stage, with its Kafka clients' start);
  - end: execute's end to the task instance's end (its XCom, its state reported);
and the run's tail, from the last task's end to the run's end. Airflow's share of a run is all
but the critical path's stage time.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import msgspec

PHASES = ("wait", "queued", "start", "stage", "end")
PRE_EXECUTE, END_GROUP, POST_EXECUTE = "::group::Pre Execute", "::endgroup::", "::group::Post Execute"


class TaskTime(msgspec.Struct, kw_only=True):
    """A task instance's phases (seconds), and when it ended (seconds after the run's start)."""

    task: str  # its task id, and [map index] if mapped
    wait: float
    queued: float
    start: float
    stage: float
    end: float
    ended_at: float


class RunTime(msgspec.Struct, kw_only=True):
    """A DAG run's seconds, its task instances' phases, and its tail (last task's end to the
    run's end)."""

    seconds: float
    tasks: list[TaskTime]
    tail: float

    def critical(self) -> list[TaskTime]:
        """Per task, its slowest instance (a mapped stage's instances run side by side)."""
        slowest: dict[str, TaskTime] = {}
        for t in self.tasks:
            name = t.task.split("[")[0]
            if name not in slowest or t.ended_at > slowest[name].ended_at:
                slowest[name] = t
        return list(slowest.values())

    def stage_seconds(self) -> float:
        """The stages' seconds on the critical path."""
        return sum(t.stage for t in self.critical())

    def airflow_seconds(self) -> float:
        """Everything else: the run's seconds but its stages'."""
        return self.seconds - self.stage_seconds()


def _epoch(value: str | None) -> float | None:
    """The metadata DB's UTC timestamp (SQLite: "YYYY-MM-DD HH:MM:SS.ffffff[+00:00]") in seconds."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value.replace(" ", "T"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def _execute_marks(log: Path) -> tuple[float, float]:
    """When the task's operator began and ended execute, from its log's task-runner groups."""
    began = ended = None
    pre = False
    for line in log.read_text().splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        event = record.get("event")
        if event == PRE_EXECUTE:
            pre = True
        elif event == END_GROUP and pre and began is None:
            began = _epoch(record["timestamp"].replace("Z", "+00:00"))
        elif event == POST_EXECUTE:
            ended = _epoch(record["timestamp"].replace("Z", "+00:00"))
    if began is None or ended is None:
        raise ValueError(f"{log}: no execute begin and end (a task that did not run its operator?)")
    return began, ended


def run_time(home: Path, dag_id: str, run_id: str, started_at: float | None = None) -> RunTime:
    """The phases of run ``run_id`` of ``dag_id`` in the Airflow at ``home`` (its SQLite metadata
    DB and its logs folder; the latest try of each task instance).

    :param started_at: when the run started (epoch seconds), if not its start date: `dags test`
        stamps that with the logical date, so the bench gives the command's start.
    """
    db = sqlite3.connect(f"file:{home / 'airflow.db'}?mode=ro", uri=True)
    with db:
        started, ended = db.execute(
            "SELECT start_date, end_date FROM dag_run WHERE dag_id = ? AND run_id = ?", (dag_id, run_id),
        ).fetchone()
        # `dags test` queues without stamping queued_dttm: there, its scheduled_dttm is the same moment.
        rows = db.execute(
            "SELECT task_id, map_index, try_number, COALESCE(queued_dttm, scheduled_dttm), start_date,"
            " end_date FROM task_instance WHERE dag_id = ? AND run_id = ? AND scheduled_dttm IS NOT NULL"
            " ORDER BY start_date",
            (dag_id, run_id),
        ).fetchall()
    db.close()
    run_start, run_end = started_at or _epoch(started), _epoch(ended)
    logs = home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
    ends: list[float] = []
    tasks = []
    for task_id, map_index, try_number, queued, start, end in rows:
        queued_at, start_at, end_at = _epoch(queued), _epoch(start), _epoch(end)
        folder = logs / f"task_id={task_id}" / (f"map_index={map_index}" if map_index >= 0 else "")
        began, finished = _execute_marks(folder / f"attempt={try_number}.log")
        after = max([e for e in ends if e <= queued_at], default=run_start)
        tasks.append(TaskTime(
            task=task_id + (f"[{map_index}]" if map_index >= 0 else ""),
            wait=queued_at - after, queued=start_at - queued_at, start=began - start_at,
            stage=finished - began, end=end_at - finished, ended_at=end_at - run_start,
        ))
        ends.append(end_at)
    return RunTime(seconds=run_end - run_start, tasks=tasks, tail=run_end - max(ends, default=run_start))


def render(run: RunTime) -> str:
    """The run's phases as a table, one row per task instance, and the totals on its critical path."""
    lines = [f"{'task':<18}" + "".join(f"{p:>8}" for p in PHASES) + f"{'ended':>8}"]
    for t in run.tasks:
        values = (getattr(t, p) for p in PHASES)
        lines.append(f"{t.task:<18}" + "".join(f"{v:8.2f}" for v in values) + f"{t.ended_at:8.2f}")
    critical = run.critical()
    totals = (sum(getattr(t, p) for t in critical) for p in PHASES)
    lines.append(f"{'critical path':<18}" + "".join(f"{v:8.2f}" for v in totals))
    lines.append(
        f"run {run.seconds:.2f}s: stages {run.stage_seconds():.2f}s, Airflow {run.airflow_seconds():.2f}s"
        f" (tail {run.tail:.2f}s)"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(render(run_time(Path(sys.argv[1]), sys.argv[2], sys.argv[3], *map(float, sys.argv[4:]))))
