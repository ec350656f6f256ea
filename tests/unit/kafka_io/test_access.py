import re
from pathlib import Path

import pytest

from include.pipeline import settings
from include.pipeline.kafka_io import access
from include.pipeline.kafka_io.access import Grant

ACL_PAGE = Path(__file__).resolve().parents[3] / "docs" / "reference" / "kafka-acls.md"


def test_the_docs_list_exactly_the_acls_of_the_module():
    assert access.table() in ACL_PAGE.read_text()


def test_least_privilege_read_and_write_per_topic_one_prefix_each_for_groups_and_transactions():
    grants = access.needs(*access.GRANTS)
    assert {g.operation for g in grants} == {"Create", "Read", "Write"}  # Describe comes with Read/Write
    assert [g for g in grants if g.prefixed] == [
        Grant("group", "kafka-pipeline-", "Read", prefixed=True),
        Grant("transactional-id", "kafka-pipeline-", "Write", prefixed=True),
    ]
    topics = {(g.name, g.operation) for g in grants if g.resource == "topic"}
    assert topics == {(t, op) for t in settings.TOPIC_CONFIGS for op in ("Create", "Read", "Write")}
    assert len(grants) == 17


def test_what_each_stage_needs():
    topic = lambda name, op: Grant("topic", name, op)  # noqa: E731
    assert access.needs("sink") == [access.GROUPS, topic("product-metrics", "Read")]
    assert access.needs("generate") == [topic("orders", "Write"), access.TRANSACTIONS]
    assert access.needs("process") == [
        access.GROUPS, topic("orders", "Read"), topic("orders-dlq", "Write"),
        topic("processed-orders", "Write"), access.TRANSACTIONS,
    ]
    # The event-driven DAG generates nothing: it may not write orders.
    assert topic("orders", "Write") not in access.needs(*access.USERS["kafka_pipeline_on_orders"])
    assert topic("orders-dlq", "Read") not in access.needs(*access.USERS["kafka_pipeline"])


def test_a_denial_names_each_missing_acl_and_where_the_list_is():
    denied = access.AccessDenied("User:pipeline", [Grant("topic", "orders-dlq", "Write"), access.GROUPS])
    assert str(denied) == (
        "Kafka denies User:pipeline Write on topic 'orders-dlq', Read on groups prefixed 'kafka-pipeline-': "
        "grant them (the ACL list: docs/reference/kafka-acls.md; `make acls PRINCIPAL=User:pipeline` "
        "prints it, with APPLY=1 applies it)"
    )
    assert isinstance(denied, ValueError)  # the operators fail such a task without retries


def test_print_lists_the_acls_of_one_dag_for_a_principal(capsys):
    assert access.main(["print", "--principal", "User:etl", "--dag", "kafka_pipeline_replay"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "User:etl: allow Read on groups prefixed 'kafka-pipeline-'",
        "User:etl: allow Read on topic 'orders-dlq'",
        "User:etl: allow Read on topic 'processed-orders'",
        "User:etl: allow Read on topic 'product-metrics'",
        "User:etl: allow Write on topic 'product-metrics'",
        "User:etl: allow Write on transactional-ids prefixed 'kafka-pipeline-'",
    ]


def test_apply_without_an_admin_config_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        access.main(["apply"])
    assert exit_.value.code == 2
    assert "apply needs --admin-config" in capsys.readouterr().err


def test_the_table_has_a_row_per_acl():
    rows = [
        line for line in access.table().splitlines() if re.match(r"\| (topic|group|transactional-id) ", line)
    ]
    assert len(rows) == 17
    assert (
        "| transactional-id | prefix `kafka-pipeline-` | Write | generate, process, analyze, replay | "
        in access.table()
    )
