"""The integration tests' fixtures: a real Apache Kafka broker (scripts/kafka/broker) for each
pytest process, emptied for each test (``pipeline``: tests/harness/pipeline.py), the worker's
metadata DB without the runs of the tests before, and a PostgreSQL server of a test's own."""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from scripts.kafka.local import throwaway_broker
from scripts.postgres.local import Postgres, throwaway_postgres
from tests.harness import in_process
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
