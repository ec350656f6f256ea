"""The pipeline a test drives: ``Pipeline``, its broker's environment (a test's own cluster,
``pipeline_on``, or the pytest process's shared broker emptied for it, ``fresh_pipeline``) and
Airflow home, its DAGs and tasks run inside this process (in_process.py) or, for the tests of the
CLI itself, with the project's airflow CLI, and kafka-python as an independent client to check
what the pipeline wrote."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Iterator

import confluent_kafka
import confluent_kafka.admin
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from include.pipeline.run.reconcile import manifest_path
from scripts.kafka.local import throwaway_broker
from scripts.postgres.local import Postgres
from tests.harness import in_process
from tests.harness.in_process import Run

METRIC_FIELDS = ("window_start", "window_end", "product_id", "product_name", "order_count", "total_revenue",
                 "avg_order_value")

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]

    def json(self):
        return json.loads(self.value, parse_float=Decimal)


class Pipeline:
    def __init__(self, env: dict[str, str], output: Path) -> None:
        self.env, self.output = env, output
        self.bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
        # kafka-python's settings for the cluster: a secured one's admin (super user) reads back.
        self.client: dict = {"bootstrap_servers": self.bootstrap}
        if env.get("KAFKA_SECURITY") == "sasl_ssl":
            admin = self.client_config("admin")
            self.client.update(
                security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                ssl_cafile=admin["ssl.ca.location"], sasl_plain_username=admin["sasl.username"],
                sasl_plain_password=admin["sasl.password"],
            )
        # The metrics store's server, when the metrics_db connection is set.
        self.postgres: Postgres | None = None
        self._read: dict[str, tuple[list[Record], dict[int, int]]] = {}  # topic -> (records, positions)

    def client_config(self, user: str) -> dict:
        """A secured cluster's librdkafka config of ``user`` (admin or pipeline)."""
        return json.loads((Path(self.env["KAFKA_DATA_DIR"]) / "clients" / f"{user}.json").read_text())

    def manifest(self, run_id: str | None = None, dag_id: str = "kafka_pipeline") -> dict:
        """The manifest reconcile wrote for a run of ``dag_id`` (the newest without ``run_id``), as JSON."""
        runs = self.output / "runs"
        if run_id is None:
            path = max(runs.glob("*.json"), key=lambda p: p.stat().st_mtime)
        else:
            path = runs / manifest_path(dag_id, run_id).name
        return json.loads(path.read_text())

    def use_postgres(self, server: Postgres) -> None:
        """Point the metrics_db connection at the server's metrics database."""
        self.postgres = server
        self.env["AIRFLOW_CONN_METRICS_DB"] = json.dumps(server.connection())

    def airflow(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        """``scripts/airflow *args`` in a process of its own, with this test's Airflow home: for
        the tests of the CLI itself (the other runs are in-process: dag_test and task)."""
        result = subprocess.run(
            [str(ROOT / "scripts/airflow"), *args], env=self.env, capture_output=True, text=True, timeout=300
        )
        if ok and result.returncode != 0:
            pytest.fail(
                f"airflow {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        return result

    def dag_test(
        self, date: str, dag: str = "kafka_pipeline", ok: bool = True, mark_success: str | None = None,
        **conf,
    ) -> Run:
        """A whole run of ``dag`` at the logical date ``date`` with ``conf``, as `airflow dags
        test` makes it, in this process; tasks matching ``mark_success`` are marked, not run."""
        run = in_process.run_dag(self.env, dag, date, conf, mark_success)
        return self._expect(ok, f"dags test {dag} {date}", run)

    def task(
        self, task_id: str, date: str = "2026-01-05T10:00:00+00:00", params: dict | None = None,
        ok: bool = True, map_index: int | None = None,
    ) -> Run:
        """One task as `airflow tasks test` runs it, in this process; ``date`` is a logical date
        or a run id; ``map_index``: one instance of a mapped stage (--map-index)."""
        run = in_process.run_task(self.env, "kafka_pipeline", task_id, date, params, map_index)
        return self._expect(ok, f"tasks test {task_id} {date}", run)

    def cli(self, *words: str, ok: bool = True) -> Run:
        """`airflow *words` (`dags test`, `tasks test`) through the CLI's own parser and command, in
        this process: the README's lines, whose scripts/airflow the CLI's tests run for real."""
        return self._expect(ok, " ".join(words), in_process.run_cli(self.env, list(words)))

    @staticmethod
    def _expect(ok: bool, what: str, run: Run) -> Run:
        if ok and not run.ok:
            pytest.fail(f"{what} ended {run.state}:\n{run.output[-8000:]}")
        return run

    def start_task(
        self, task_id: str, date: str = "2026-01-05T10:00:00+00:00", log: Path | None = None,
    ) -> subprocess.Popen:
        """`scripts/airflow tasks test` of a task, in the background and in a process group of its
        own (to stop or kill it); its output to ``log`` if given."""
        command = [str(ROOT / "scripts/airflow"), "tasks", "test", "kafka_pipeline", task_id, date]
        return self._start(command, log)

    def start_stage(self, stage: str, log: Path | None = None, worker: str | None = None) -> subprocess.Popen:
        """The stage alone, without Airflow (tests/harness/stage_process.py), the same way;
        ``worker`` "i/n": instance i of n."""
        command = [sys.executable, "-m", "tests.harness.stage_process", stage]
        command += [self.postgres.url()] if self.postgres else []
        return self._start(command + (["--worker", worker] if worker else []), log)

    def _start(self, command: list[str], log: Path | None) -> subprocess.Popen:
        with open(log or os.devnull, "wb") as out:
            return subprocess.Popen(
                command, cwd=ROOT, env={**self.env, "PYTHONPATH": str(ROOT)}, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )

    @contextmanager
    def running(
        self, stage: str, log: Path | None = None, airflow: bool = False, worker: str | None = None,
    ) -> Iterator[subprocess.Popen]:
        """start_stage (start_task with ``airflow``), killed (-9) when the block ends if it still
        runs: a failed test must not leave a frozen or running stage behind."""
        proc = self.start_task(stage, log=log) if airflow else self.start_stage(stage, log, worker)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def broker(self, action: str) -> None:
        subprocess.run([str(ROOT / "scripts/kafka/broker"), action], env=self.env, check=True, timeout=300)

    def produce(self, topic: str, records: list[tuple[bytes | None, bytes | None]]) -> None:
        producer = KafkaProducer(**self.client, acks="all", linger_ms=20, batch_size=256 * 1024)
        for key, value in records:
            producer.send(topic, key=key, value=value)
        producer.flush()
        producer.close()

    def produce_many(self, topic: str, records: list[tuple[bytes | None, bytes | None]]) -> None:
        """produce() through librdkafka: a large input (kafka-python sends ~5,000 records a second)."""
        producer = confluent_kafka.Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 20})
        for key, value in records:
            while True:
                try:
                    producer.produce(topic, value, key)
                    break
                except BufferError:
                    producer.poll(0.1)
        assert producer.flush(60) == 0, f"not every record reached {topic}"

    def read(self, topic: str) -> list[Record]:
        """Every committed record of the topic, in (partition, offset) order. What an earlier call
        read is kept, and read on from: a module's broker holds millions of records by its end."""
        records, positions = self._read.get(topic, ([], {}))
        consumer = KafkaConsumer(**self.client, isolation_level="read_committed", enable_auto_commit=False)
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(partitions)
        ends = consumer.end_offsets(partitions)
        if any(ends[tp] < positions.get(tp.partition, 0) for tp in partitions):  # the topic made anew
            records, positions = [], {}
        records = list(records)
        for tp in partitions:
            consumer.seek(tp, positions.get(tp.partition, 0))
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            assert time.monotonic() < deadline, f"reading {topic} did not reach its end"
            for tp, messages in consumer.poll(timeout_ms=500).items():
                records += [
                    Record(m.topic, m.partition, m.offset, m.key, m.value, dict(m.headers)) for m in messages
                ]
        positions = {tp.partition: consumer.position(tp) for tp in partitions}
        consumer.close()
        records.sort(key=lambda r: (r.partition, r.offset))
        self._read[topic] = (records, positions)
        return list(records)

    def metrics_lines(self) -> list[dict]:
        """The lines of metrics.json, once checked equal to the rows of the metrics store."""
        path = self.output / "metrics.json"
        lines = [json.loads(line, parse_float=Decimal) for line in path.read_text().splitlines()]
        assert lines == self.store_rows(), "metrics.json and the metrics store differ"
        return lines

    def store_rows(self) -> list[dict]:
        """The metrics store's rows, read with the database's own driver (sqlite3, or psycopg
        when ``postgres`` is set), as metrics.json lines."""
        query = f"SELECT {', '.join(METRIC_FIELDS)} FROM product_metrics ORDER BY window_start, product_id"
        if self.postgres:
            with self.postgres.connect("metrics") as db:
                rows = db.execute(query).fetchall()
        else:
            with closing(sqlite3.connect(self.output / "metrics.db")) as db:
                rows = db.execute(query).fetchall()
        return [
            {**dict(zip(METRIC_FIELDS, row)), "total_revenue": Decimal(row[5]),
             "avg_order_value": Decimal(row[6])}
            for row in rows
        ]


def airflow_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a test's own Airflow home (for the CLI's tests: a copy of the worker's
    DB before any run, in_process.airflow_home) and output dir."""
    airflow_home = tmp_path / "airflow"
    in_process.airflow_home(airflow_home)
    env = {**os.environ, "AIRFLOW_HOME": str(airflow_home), "PIPELINE_OUTPUT_DIR": str(tmp_path / "output")}
    for name in ("AIRFLOW_CONN_KAFKA_DEFAULT", "AIRFLOW_CONN_METRICS_DB", "KAFKA_CLIENT_CONFIG"):
        env.pop(name, None)
    return env


@contextmanager
def pipeline_on(tmp_path: Path, **cluster) -> Iterator[Pipeline]:
    """A Pipeline with an Airflow home and a cluster of its own (``cluster``: throwaway_broker's
    nodes, security)."""
    with throwaway_broker(tmp_path / "kafka", airflow_env(tmp_path), **cluster) as env:
        yield Pipeline(env, tmp_path / "output")


BROKER_SETTINGS = ("KAFKA_PORT", "KAFKA_DATA_DIR", "KAFKA_BOOTSTRAP_SERVERS", "KAFKA_NODES", "KAFKA_SECURITY")
GROUPS_EMPTY_WITHIN = 60  # s: a consumer killed with -9 leaves its group after session.timeout.ms (45 s)


def fresh_pipeline(tmp_path: Path, broker: dict[str, str]) -> Pipeline:
    """A Pipeline with an Airflow home of its own on the shared broker, emptied as a new broker
    is: running (a test may have stopped it), no topics, no consumer groups (with their offsets).
    Transactional ids stay, as a producer's epoch does: the next producer of an id fences the
    last one."""
    env = {**airflow_env(tmp_path), **broker}
    subprocess.run([str(ROOT / "scripts/kafka/broker"), "up"], env=env, check=True, timeout=300,
                   capture_output=True)
    admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": broker["KAFKA_BOOTSTRAP_SERVERS"]})
    topics = [name for name in admin.list_topics(timeout=30).topics if not name.startswith("__")]
    for future in (admin.delete_topics(topics, operation_timeout=30) if topics else {}).values():
        future.result()
    deadline = time.monotonic() + GROUPS_EMPTY_WITHIN
    while groups := [group.group_id for group in admin.list_consumer_groups().result().valid]:
        failed = []
        for group, future in admin.delete_consumer_groups(groups, request_timeout=30).items():
            try:
                future.result()
            except confluent_kafka.KafkaException as error:
                failed.append(f"{group}: {error}")
        assert not failed or time.monotonic() < deadline, f"groups left on the shared broker: {failed}"
        time.sleep(1 if failed else 0)
    # Gone from the metadata, and from the broker's log dir (renamed "<topic>-<p>.<id>-delete"): it
    # has stopped serving them, so the topics made next are new to it.
    logs = Path(broker["KAFKA_DATA_DIR"]) / "logs"
    while set(topics) & set(admin.list_topics(timeout=30).topics) or any(
        path.name.rpartition("-")[0] in topics for path in logs.iterdir() if not path.name.endswith("-delete")
    ):
        assert time.monotonic() < deadline, f"topics still on the shared broker: {topics}"
        time.sleep(0.2)
    return Pipeline(env, tmp_path / "output")
