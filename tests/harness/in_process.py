"""Airflow inside the pytest worker: `dags test` as ``dag.test()`` and `tasks test` through the
CLI's own command, on the worker's metadata DB. A process pays Airflow's start-up once (about
15 s of CPU, two thirds of it the execution API building its routers on the first call), so a
worker pays it once instead of once per run. The tests of the CLI itself (the README's whole
run, a task stopped by a signal) still start `scripts/airflow`.

The worker's DB (tests/conftest.py gives each worker its AIRFLOW_HOME) is created once, and
every run in it is deleted before a test starts: a test's runs, XComs and confs must not leak
into the next one (`tasks test` reuses the run of its date). A test's settings (its broker,
output directory, connections) are in the environment only while one of its runs runs, where
the environment secrets backend reads the connections at lookup."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import sqlite3
import sys
from contextlib import closing, contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Iterator
from unittest import mock

from include.pipeline.kafka_io.client import Kafka

ROOT = Path(__file__).resolve().parents[2]
# Settings of a test's own `scripts/airflow` home that must not reach the worker's Airflow.
CLI_ONLY = {"AIRFLOW_HOME"}


@dataclass
class Run:
    """How a run or task ended (``state``: success, failed, ...) and what it logged."""

    state: str
    output: str

    @property
    def ok(self) -> bool:
        return self.state in ("success", "skipped")


@cache
def metadata_db() -> Path:
    """The worker's metadata DB, made once: Airflow's tables and the pipeline's pool. Returns a
    copy of it made before any run, with scripts/airflow's mark that the pool exists: the DB that
    the homes of the CLI's and the live Airflow's tests start from."""
    from airflow.models.pool import Pool
    from airflow.utils import db

    from kafka_stages.pipeline import POOL, POOL_SLOTS

    db.initdb()
    Pool.create_or_update_pool(POOL, POOL_SLOTS, "Kafka stages of all pipeline DAGs", include_deferred=False)
    home = Path(os.environ["AIRFLOW_HOME"])  # its DB: home/airflow.db (tests/conftest.py)
    template = home / "template" / "airflow.db"
    template.parent.mkdir()
    with closing(sqlite3.connect(home / "airflow.db")) as worker, closing(sqlite3.connect(template)) as copy:
        worker.backup(copy)
    template.with_name(f".pool-{POOL}-{POOL_SLOTS}").touch()
    return template


def airflow_home(home: Path) -> None:
    """Make ``home`` an Airflow home with a copy of the worker's DB as it was before any run."""
    shutil.copytree(metadata_db().parent, home, dirs_exist_ok=True)


def forget_runs() -> None:
    """Delete every DAG run of the worker's DB (their task instances and XComs go with them)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    metadata_db()
    with create_session() as session:
        session.execute(delete(DagRun))


def instance_results(task_id: str, run_id: str) -> dict[int, dict]:
    """map index -> the XCom each instance of ``task_id`` pushed in the run ``run_id``."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(XComModel.map_index, XComModel.value)
            .where(XComModel.task_id == task_id, XComModel.run_id == run_id, XComModel.key == "return_value")
        ).all()
    return {index: json.loads(value) if isinstance(value, str) else value for index, value in rows}


def run_ids(dag_id: str) -> list[str]:
    """The run ids of ``dag_id`` in the worker's DB, oldest first (``dags test`` names a run
    after the moment it was made, not its logical date)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return list(session.scalars(
            select(DagRun.run_id).where(DagRun.dag_id == dag_id).order_by(DagRun.id)
        ))


def task_state(task_id: str) -> tuple[str, int] | None:
    """(state, try number) of the newest attempt of ``task_id`` in the worker's DB."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.execute(
            select(TaskInstance.state, TaskInstance.try_number).where(TaskInstance.task_id == task_id)
            .order_by(TaskInstance.start_date.desc())
        ).first()
    return (str(row[0]), row[1]) if row else None


def _parsed(dag_id: str):
    """The DAG as a new process parses it: a DAG object holds what its last run resolved."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags" / f"{dag_id}.py")).dags[dag_id]  # each DAG's file is its id


def run_dag(env: dict[str, str], dag_id: str, date: str, conf: dict, mark_success: str | None = None) -> Run:
    """`airflow dags test dag_id date --conf conf` (``--mark-success-pattern mark_success``)."""
    with settings_of(env), captured() as output:
        run = _parsed(dag_id).test(
            logical_date=datetime.fromisoformat(date), run_conf=conf,
            mark_success_pattern=re.compile(mark_success) if mark_success else None,
        )
    return Run(str(run.state), output.getvalue())


def run_task(
    env: dict[str, str], dag_id: str, task_id: str, date: str, params: dict | None,
    map_index: int | None = None,
) -> Run:
    """`airflow tasks test dag_id task_id date [-t params] [--map-index map_index]`."""
    given = ["-t", json.dumps(params)] if params else []
    given += ["--map-index", str(map_index)] if map_index is not None else []
    return run_cli(env, ["tasks", "test", dag_id, task_id, date, *given])


def run_cli(env: dict[str, str], words: list[str]) -> Run:
    """`airflow <words>` (`tasks test` or `dags test`) through the CLI's own parser and command,
    with the argv the CLI's process would have (an operator reads `tasks test`'s -t from it)."""
    from airflow.cli import cli_parser

    from kafka_stages.operators import ALL_PARTITIONS
    from kafka_stages.pipeline import MAPPED

    if words[:2] == ["tasks", "test"] and words[3] in MAPPED and not {"--map-index", "-m"} & set(words):
        # As scripts/airflow runs a mapped stage alone: one instance, over every partition.
        words, env = [*words, "--map-index", "0"], {**env, ALL_PARTITIONS: "1"}
    args = cli_parser.get_parser().parse_args(words)
    with settings_of(env), captured() as output, mock.patch.object(sys, "argv", ["airflow", *words]):
        try:
            args.func(args)
        except SystemExit as failed:  # `dags test` of a run that failed
            print(failed)
    # The commands do not say how a task ended (scripts/airflow reads it from the log too); a
    # temporary run (a date without one) is deleted with its task instance.
    found = re.findall(r"Task instance state updated .*?new_state=(\w+)|DagRun Finished: .*?\bstate=(\w+)",
                       output.getvalue())
    return Run("".join(found[-1]) if found else "failed", output.getvalue())


@contextmanager
def settings_of(env: dict[str, str]) -> Iterator[None]:
    """os.environ as ``env`` (but the worker's Airflow home), kafka_default as scripts/airflow
    makes it, for the block."""
    metadata_db()
    wanted = {name: value for name, value in env.items() if name not in CLI_ONLY}
    with mock.patch.dict(os.environ, wanted):
        for name in set(os.environ) - set(wanted) - CLI_ONLY:
            del os.environ[name]
        if "AIRFLOW_CONN_KAFKA_DEFAULT" not in wanted:  # KAFKA_CLIENT_CONFIG, else the servers
            extra = Kafka.from_env().config
            os.environ["AIRFLOW_CONN_KAFKA_DEFAULT"] = json.dumps({"conn_type": "kafka", "extra": extra})
        yield


@contextmanager
def captured() -> Iterator[io.StringIO]:
    """What the block logs, as Airflow prints it: structlog writes to the sys.stdout of the
    moment, the standard library's records through the root logger's formatter."""
    output = io.StringIO()
    root = logging.getLogger()
    handler = logging.StreamHandler(output)
    handler.setFormatter(next((h.formatter for h in root.handlers if h.formatter), None))
    root.addHandler(handler)
    try:
        with redirect_stdout(output), redirect_stderr(output):
            yield output
    finally:
        root.removeHandler(handler)
