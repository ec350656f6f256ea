"""Each stage alone as `airflow tasks test` runs it, on hand-written input: exact records, exact money,
one window fed by two runs, every invalid record in the dead-letter topic as it came; and the
README's lines that run the stages alone, as written."""

import json
import re
import shlex
from datetime import datetime
from decimal import Decimal

from kafka import KafkaConsumer, TopicPartition

from tests.harness.expected import assert_as_the_oracle_says, metrics_of_partials, oracle_of
from tests.harness.factories import order_value
from tests.harness.pipeline import ROOT

W = 1767607200  # 2026-01-05T10:00:00Z
README = ROOT / "README.md"
NOTICE = "-t params overridden by the conf of run"
FIRST_VALID = [
    (b"a1", order_value("a1", "prod-1", "10.005", "2026-01-05T10:00:05Z")),
    (b"a2", order_value("a2", "prod-1", "20.00", "2026-01-05T10:00:59.999+00:00")),
    (b"a3", order_value("a3", "prod-1", "0.10", "2026-01-05T11:00:30+01:00")),
    (b"a4", order_value("a4", "prod-2", "5", "2026-01-05T10:01:00")),
    (b"a5", order_value("a5", "prod-2", "99.99", "2026-01-05T10:01:30Z", coupon="SPRING")),
]
FIRST_INVALID = {  # key -> (value, reason)
    b"k-tombstone": (None, "tombstone"),
    b"k-empty": (b"", "empty"),
    b"k-utf8": (b'{"order_id": "\xff\xfe"}', "bad_utf8"),
    b"k-text": (b"not json at all", "invalid_json"),
    b"k-nan": (b'{"order_id": "x", "amount": NaN}', "invalid_json"),
    b"k-array": (b"[1, 2]", "not_an_object"),
    b"k-string-amount": (order_value("x", "prod-1", '"12.50"', "2026-01-05T10:00:00Z"), "invalid_amount"),
    b"k-zero": (order_value("x", "prod-1", "0", "2026-01-05T10:00:00Z"), "invalid_amount"),
    b"k-huge": (order_value("x", "prod-1", "1e400", "2026-01-05T10:00:00Z"), "invalid_amount"),
    b"k-product": (order_value("x", "prod-9", "1.00", "2026-01-05T10:00:00Z"), "unknown_product"),
    b"k-date-only": (order_value("x", "prod-1", "1.00", "2026-01-05"), "invalid_timestamp"),
    b"k-empty-id": (order_value("", "prod-1", "1.00", "2026-01-05T10:00:00Z"), "invalid_order_id"),
    b"k-no-user": (
        b'{"order_id": "x", "product_id": "prod-1", "amount": 1, "timestamp": "2026-01-05T10:00:00Z"}',
        "missing_field",
    ),
}
SECOND_VALID = [
    (b"b1", order_value("b1", "prod-1", "0.005", "2026-01-05T10:00:10Z")),
    (b"b2", order_value("b2", "prod-3", "1.00", "2026-01-05T10:00:00Z")),
]
SECOND_INVALID = {b"k-brace": (b"{", "invalid_json")}


def metric(start, product_id, name, count, total, avg):
    return {"window_start": start, "window_end": start + 60, "product_id": product_id, "product_name": name,
            "order_count": count, "total_revenue": Decimal(total), "avg_order_value": Decimal(avg)}


def run_stages(pipeline):
    for task in ("process", "analyze", "sink"):
        pipeline.task(task)


def check_dead_letters(pipeline, invalid):
    sources = {(r.partition, r.offset): r for r in pipeline.read("orders")}
    dead = pipeline.read("orders-dlq")
    assert sorted(r.key for r in dead) == sorted(invalid)
    for record in dead:
        value, reason = invalid[record.key]
        assert record.value == value
        assert record.headers["reason"] == reason.encode()
        assert record.headers["detail"]
        assert record.headers["source.topic"] == b"orders"
        source = sources[(int(record.headers["source.partition"]), int(record.headers["source.offset"]))]
        assert (source.key, source.value) == (record.key, record.value)


def test_stages_alone_two_runs_into_one_window(pipeline):
    pipeline.task("create_topics")
    pipeline.produce("orders", FIRST_VALID + [(k, v) for k, (v, _) in FIRST_INVALID.items()])
    run_stages(pipeline)

    processed = pipeline.read("processed-orders")
    assert sorted(r.key for r in processed) == [b"a1", b"a2", b"a3", b"a4", b"a5"]
    a5 = next(r.json() for r in processed if r.key == b"a5")
    assert datetime.fromisoformat(a5.pop("processed_at")).utcoffset().total_seconds() == 0
    assert a5 == {"order_id": "a5", "user_id": "user-1", "product_id": "prod-2", "product_name": "Phone",
                  "amount": Decimal("99.99"), "timestamp": "2026-01-05T10:01:30Z"}
    check_dead_letters(pipeline, FIRST_INVALID)
    assert pipeline.metrics_lines() == [
        metric(W, "prod-1", "Laptop", 3, "30.11", "10.04"),  # 30.105 and 10.035 round half-up
        metric(W + 60, "prod-2", "Phone", 2, "104.99", "52.50"),
    ]

    pipeline.produce("orders", SECOND_VALID + [(k, v) for k, (v, _) in SECOND_INVALID.items()])
    run_stages(pipeline)
    expected = [
        metric(W, "prod-1", "Laptop", 4, "30.11", "7.53"),  # 30.110 / 4 = 7.5275
        metric(W, "prod-3", "Tablet", 1, "1.00", "1.00"),
        metric(W + 60, "prod-2", "Phone", 2, "104.99", "52.50"),
    ]
    assert pipeline.metrics_lines() == expected
    check_dead_letters(pipeline, {**FIRST_INVALID, **SECOND_INVALID})
    assert metrics_of_partials(pipeline.read("product-metrics")) == expected
    runs = [FIRST_VALID + [(k, v) for k, (v, _) in FIRST_INVALID.items()],
            SECOND_VALID + [(k, v) for k, (v, _) in SECOND_INVALID.items()]]
    assert assert_as_the_oracle_says(pipeline, oracle_of(*([v for _, v in run] for run in runs))) == expected


def readme_block() -> list[list[str]]:
    """The commands of README.md's block under "Running stages alone and on a schedule", each as
    its words (a trailing comment dropped): the test runs what a reader copies."""
    section = README.read_text().split("\n## Running stages alone and on a schedule\n", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def end_offsets(pipeline, topic: str) -> int:
    """The sum of the topic's end offsets, read with kafka-python."""
    consumer = KafkaConsumer(**pipeline.client)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def summary(log: str, label: str) -> str:
    """The text after ``label :`` in the stage summary of a task's log (stage_summary.lines), up
    to the logger's name that ends each log line."""
    return re.search(rf"(?<=\s){label} +: (.*?)(?= \[airflow\.|$)", log, re.MULTILINE).group(1)


def test_the_readme_block_as_written_then_a_t_param_a_run_overrides(pipeline):
    """The README's lines, in order, on a fresh broker and Airflow home: a whole run with no
    orders at 09:00, then each stage alone at 10:00, a date without a run, where -t is used as
    given. Then -t on the date of the whole run: its conf wins, and the task's log says so."""
    lines = readme_block()
    assert {line[0] for line in lines} == {"scripts/airflow"}
    assert [line[1:3] for line in lines] == [["dags", "test"]] + [["tasks", "test"]] * (len(lines) - 1)
    # The whole run through scripts/airflow (the -t below finds it in that CLI's home); each stage
    # alone through the CLI's own command in this process (the wrapper runs `tasks test` below).
    whole_run = pipeline.airflow(*lines[0][1:])
    logs = {"dag": whole_run.stdout + whole_run.stderr}
    for line in lines[1:]:
        logs[line[4]] = pipeline.cli(*line[1:]).output
    assert "state=success" in logs["dag"]

    orders = pipeline.read("orders")  # kafka-python, not the project's client
    processed, dead = pipeline.read("processed-orders"), pipeline.read("orders-dlq")
    assert len(orders) == 500
    assert summary(logs["generate"], "generated").startswith("500 orders -> orders")
    assert not [name for name, log in logs.items() if NOTICE in log]  # generate's -t used as given
    # The sensor's count is offsets (the records and each transaction's commit markers) not read.
    waiting = end_offsets(pipeline, "orders")
    assert 500 < waiting < 520
    topics = f"{{'orders': {waiting}, 'processed-orders': 0, 'product-metrics': 0}}"
    assert f"{waiting} records to work on: {topics}" in logs["wait_for_orders"]
    # process read 500: each one processed or dead-lettered as it came, by position.
    assert summary(logs["process"], "read").startswith("500 from orders")
    assert summary(logs["process"], "valid") == f"{len(processed)} -> processed-orders"
    assert summary(logs["process"], "invalid").startswith(f"{len(dead)} -> orders-dlq")
    assert len(processed) + len(dead) == 500 and 0 < len(dead) < 60  # invalid_ratio 0.05
    by_position = {(r.partition, r.offset): r for r in orders}
    dead_positions = {(int(r.headers["source.partition"]), int(r.headers["source.offset"])) for r in dead}
    assert len(dead_positions) == len(dead)
    for record in dead:
        source = by_position[int(record.headers["source.partition"]), int(record.headers["source.offset"])]
        assert (source.key, source.value) == (record.key, record.value)
    valid = [r for position, r in by_position.items() if position not in dead_positions]
    docs = [r.json() for r in processed]
    assert sorted(r.key for r in processed) == sorted(r.key for r in valid)
    assert sorted(d["order_id"].encode() for d in docs) == sorted(r.key for r in processed)
    assert len({d["order_id"] for d in docs}) == len(docs)
    # The temporary run of 10:00 has the data interval 09:00-10:00: the orders' event times.
    times = [datetime.fromisoformat(d["timestamp"]) for d in docs]
    assert min(times) >= datetime.fromisoformat("2026-01-05T09:00:00+00:00")
    assert max(times) < datetime.fromisoformat("2026-01-05T10:00:00+00:00")

    # analyze and sink: every valid order counted, the metrics and dead letters the oracle's (the
    # generated ids are unique and in event order: the order on each partition changes nothing).
    metrics = assert_as_the_oracle_says(pipeline, oracle_of([r.value for r in orders]))
    assert summary(logs["analyze"], "counted").startswith(f"{len(processed)} orders, revenue ")
    assert metrics_of_partials(pipeline.read("product-metrics")) == metrics
    assert summary(logs["sink"], "holds").startswith(f"{len(metrics)} rows, {len(processed)} orders, ")

    # -t on the date of the whole run: that run's conf ({"orders": 0}) wins, said in one line.
    date = lines[0][4]
    run_id = re.search(r"DagRun Finished: dag_id=kafka_pipeline, .*?run_id=(\S+),", logs["dag"]).group(1)
    result = pipeline.airflow(
        "tasks", "test", "kafka_pipeline", "generate", date, "-t", json.dumps({"orders": 5})
    )
    notices = [line for line in (result.stdout + result.stderr).splitlines() if NOTICE in line]
    assert len(notices) == 1, notices
    why = "(a run's conf wins over -t; pick a date without a run to use -t)"
    assert f"{NOTICE} {run_id}: orders=0 used, not 5 {why}" in notices[0]
    assert len(pipeline.read("orders")) == 500


def test_a_stage_before_its_topics_exist_says_what_to_do(pipeline):
    result = pipeline.task("process", ok=False)
    assert result.state == "up_for_retry"  # as any failed attempt: Airflow's retries
    assert "topic 'orders' does not exist: run the create_topics task first" in result.output
