"""The integration tests' fixtures: a real Apache Kafka broker (scripts/kafka/broker) for each
pytest process, emptied for each test (``pipeline``: tests/harness/pipeline.py), the worker's
metadata DB without the runs of the tests before, a PostgreSQL server of a test's own, and a live
Airflow for a module of operations tests (``live``)."""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from scripts.kafka.local import throwaway_broker
from scripts.postgres.local import Postgres, throwaway_postgres
from tests.harness import in_process
from tests.harness.live_airflow import live_stack
from tests.harness.live_runs import DAGS, SELDOM_PARSED, restart
from tests.harness.pipeline import BROKER_SETTINGS, fresh_pipeline


@pytest.fixture(scope="session")
def shared_broker(tmp_path_factory) -> Iterator[dict[str, str]]:
    """One plain broker for the tests of this pytest process that need no cluster of their own:
    a broker's start costs about 7 CPU-seconds and 8 s, more than most tests' Kafka work. Its
    settings (throwaway_broker's); each test gets it as new from ``fresh_pipeline``."""
    with throwaway_broker(tmp_path_factory.mktemp("kafka"), dict(os.environ)) as env:
        yield {key: env[key] for key in BROKER_SETTINGS}


@pytest.fixture(autouse=True)
def no_runs_of_other_tests() -> None:
    """The worker's metadata DB without the runs of the tests before."""
    in_process.forget_runs()


@pytest.fixture
def pipeline(tmp_path, shared_broker):
    return fresh_pipeline(tmp_path, shared_broker)


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server of its own (initdb, pg_ctl on a free port) with a `metrics` database."""
    with throwaway_postgres() as server:
        yield server


# The API server frozen, a task's supervisor gives up after its failed heartbeats, then stops the
# task. After one here, not the default 3 (about 2.5 minutes in all,
# docs/operations/stopping-and-recovering.md): the same rule in a third of the time. Each
# heartbeat keeps its 5 retries with backoff: a busy API server's first answers take longer than a
# request's 5 s timeout.
FAILED_HEARTBEATS = "1"


@pytest.fixture(scope="module")
def operations_stack(tmp_path_factory):
    """`scripts/airflow standalone` and a broker of its own (``live_stack``) for a module of
    operations tests (test_operations*.py)."""
    with live_stack(
        tmp_path_factory.mktemp("operations"), DAGS, **SELDOM_PARSED,
        AIRFLOW__WORKERS__MAX_FAILED_HEARTBEATS=FAILED_HEARTBEATS,
    ) as stack:
        yield stack


@pytest.fixture
def live(operations_stack):
    """The module's (airflow, pipeline), Airflow running: each test finds it so, even after one
    that failed while it was stopped, and so each also runs alone."""
    airflow, _ = operations_stack
    if not airflow.running():
        restart(airflow)
    return operations_stack
