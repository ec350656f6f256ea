"""The DAGs against a secured cluster (scripts/kafka/broker with KAFKA_SECURITY=sasl_ssl): SCRAM-
SHA-512 over TLS, the StandardAuthorizer on, and every run made as `pipeline`, a user holding only
the ACLs of include/pipeline/kafka_io/access.py (the table of docs/reference/kafka-acls.md). The
cluster is the module's; each test has its own Airflow home and output."""

import json
import os
from pathlib import Path

import pytest

from include.pipeline import stages, topology
from include.pipeline.kafka_io import access
from include.pipeline.kafka_io.client import Kafka
from include.pipeline.stages import producers
from scripts.kafka.local import throwaway_broker
from tests.harness.expected import expected_metrics
from tests.harness.in_process import task_state
from tests.harness.pipeline import Pipeline, airflow_env

CLUSTER = ("KAFKA_PORT", "KAFKA_DATA_DIR", "KAFKA_BOOTSTRAP_SERVERS", "KAFKA_NODES", "KAFKA_SECURITY")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with throwaway_broker(
        tmp_path_factory.mktemp("secured") / "kafka", dict(os.environ), security="sasl_ssl",
    ) as env:
        yield {name: env[name] for name in CLUSTER}


@pytest.fixture
def secured(tmp_path, cluster) -> Pipeline:
    """Airflow's kafka_default connection is the pipeline user's client config."""
    pipeline = Pipeline({**airflow_env(tmp_path), **cluster}, tmp_path / "output")
    pipeline.env["KAFKA_CLIENT_CONFIG"] = str(Path(cluster["KAFKA_DATA_DIR"]) / "clients" / "pipeline.json")
    return pipeline


def connect_as(pipeline: Pipeline, **changes: str) -> None:
    """The kafka_default connection: the pipeline user's config with ``changes``."""
    extra = {**pipeline.client_config("pipeline"), **changes}
    pipeline.env["AIRFLOW_CONN_KAFKA_DEFAULT"] = json.dumps({"conn_type": "kafka", "extra": extra})


def failed_run(pipeline: Pipeline, date: str, **conf) -> str:
    """A whole run that fails; what it logged."""
    result = pipeline.dag_test(date, ok=False, **conf)
    assert result.state == "failed"
    return result.output


def test_a_wrong_password_fails_the_run_at_once_saying_so(secured):
    connect_as(secured, **{"sasl.password": "not-the-password"})
    output = failed_run(secured, "2026-01-05T08:00:00+00:00", orders=100)
    assert (
        f"authentication failed for pipeline (SCRAM-SHA-512) at {secured.bootstrap}: check the kafka_default "
        "connection's sasl.username / sasl.password"
    ) in output
    assert task_state("create_topics") == ("failed", 1)  # failed for good, no retry
    assert "cannot reach Kafka" not in output  # at the refusal, not after waiting for an answer


def test_a_ca_the_client_does_not_trust_names_the_certificate_problem(secured, tmp_path):
    other_ca = tmp_path / "other-ca.pem"  # a CA that did not sign the brokers' certificates
    other_ca.write_text(Path("/etc/ssl/certs/ca-certificates.crt").read_text())
    connect_as(secured, **{"ssl.ca.location": str(other_ca)})
    output = failed_run(secured, "2026-01-05T08:00:00+00:00", orders=100)
    assert f"TLS with {secured.bootstrap} failed: SSL handshake failed" in output
    assert "certificate verify failed" in output
    assert "Check the kafka_default connection's ssl.ca.location" in output
    assert task_state("create_topics") == ("failed", 1)


def test_each_acl_of_the_list_removed_in_turn_fails_the_stages_naming_it(secured):
    """Every ACL of the list, removed alone: what a run of the first DAG needing it calls first
    (create_topics with the DAG's stages, then the stage itself) fails naming that ACL alone."""
    admin = Kafka(secured.client_config("admin"))
    kafka = Kafka(secured.client_config("pipeline"))
    grants = access.needs(*access.GRANTS)
    assert len(grants) == 17
    for grant in grants:
        dag = next(dag for dag, names in access.USERS.items() if grant in access.needs(*names))
        stages_of_dag = access.USERS[dag]
        stages.create_topics(admin)
        if grant.operation == "Create":  # only a missing topic needs it
            _delete_topic(admin, grant.name)
        access.revoke(admin, "User:pipeline", [grant])
        try:
            with pytest.raises(access.AccessDenied) as denied:
                if "create_topics" in stages_of_dag:
                    stages.create_topics(kafka, stages_of_dag)
                _start(kafka, next(stage for stage in stages_of_dag if grant in access.GRANTS[stage]))
        finally:
            access.apply(admin, "User:pipeline", [grant])
        assert denied.value.missing == [grant]
        assert str(denied.value).startswith(
            f"Kafka denies User:pipeline {grant}: grant it (the ACL list: docs/reference/kafka-acls.md"
        )


def _start(kafka: Kafka, stage: str) -> None:
    """A stage's first steps: its checks and, transactional, its producer's registration."""
    access.ready(kafka, [stage])
    if access.TRANSACTIONS in access.GRANTS[stage]:
        producers.transactional_producer(kafka, topology.STAGES[stage].transactional_id)


@pytest.mark.parametrize("grant", [
    access.Grant("topic", "orders", "Create"),
    access.TRANSACTIONS,
], ids=str)
def test_a_run_without_an_acl_fails_at_once_naming_it(secured, grant):
    admin = Kafka(secured.client_config("admin"))
    stages.create_topics(admin)
    if grant.operation == "Create":
        _delete_topic(admin, grant.name)
    access.revoke(admin, "User:pipeline", [grant])
    try:
        output = failed_run(secured, "2026-01-05T07:00:00+00:00", orders=10)
    finally:
        access.apply(admin, "User:pipeline", [grant])
    denial = f"Kafka denies User:pipeline {grant}: grant it (the ACL list: docs/reference/kafka-acls.md"
    assert denial in output
    # create_topics registers analyze's transactional id too (it migrates analyze's state of the
    # version before partitions): every missing ACL fails the run there.
    assert task_state("create_topics") == ("failed", 1)


def _delete_topic(admin: Kafka, topic: str) -> None:
    client = admin.admin()
    client.delete_topics([topic], request_timeout=30)[topic].result()


def test_a_whole_run_as_the_least_privileged_user_is_exact_and_the_password_is_nowhere(secured):
    password = secured.client_config("pipeline")["sasl.password"]
    # Through the CLI: scripts/airflow makes kafka_default of KAFKA_CLIENT_CONFIG, and the
    # password is looked for in what the CLI printed and in its Airflow home (logs, DB).
    result = secured.airflow("dags", "test", "kafka_pipeline", "2026-01-05T10:00:00+00:00", "--conf",
                             json.dumps({"orders": 3000, "seed": 11, "invalid_ratio": 0.1}))
    output = result.stdout + result.stderr
    assert "state=success" in output

    processed = [r.json() for r in secured.read("processed-orders")]
    dead = secured.read("orders-dlq")
    assert len(processed) + len(dead) == len(secured.read("orders")) == 3000
    metrics = secured.metrics_lines()
    assert metrics == expected_metrics(processed)
    manifest = secured.manifest()
    assert manifest["reconciled"] is True
    assert manifest["summary"]["counted"] == len(processed) and manifest["summary"]["invalid"] == len(dead)

    assert password not in output
    files = [
        p for d in (secured.output, Path(secured.env["AIRFLOW_HOME"])) for p in d.rglob("*") if p.is_file()
    ]
    assert {p.name for p in files} >= {"metrics.json", "metrics.db", "airflow.db"}
    assert [p for p in files if password.encode() in p.read_bytes()] == []
