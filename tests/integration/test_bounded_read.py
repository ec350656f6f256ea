"""Where a bounded read of a transactional topic ends, on a real broker: never before a
transaction whose commit returned before the read started (its commit markers are written after
the commit returns), and held by another writer's open transaction for a bound only, after
which reconcile names what was read short and what was left for the next run."""

import logging
import time
from datetime import datetime, timedelta, timezone

import confluent_kafka
import pytest
from kafka import KafkaConsumer, TopicPartition

from include.pipeline import settings, stages
from include.pipeline.kafka_io.client import Kafka
from include.pipeline.kafka_io.reading import BoundedRead
from include.pipeline.kafka_io.writing import Transactions, produce_all
from include.pipeline.run import reconcile
from include.pipeline.run.results import RunResults
from include.pipeline.stages import producers
from tests.harness.factories import order_value

LOOPS = 60  # commits, each read at once: before the fix, 14 to 18 of 60 reads ended short
ORDERS_A_ROUND = 200
HOUR = datetime(2026, 1, 5, 9, tzinfo=timezone.utc)


@pytest.fixture
def kafka(pipeline, monkeypatch) -> Kafka:
    """The pipeline's client of the test's broker, its topics made; the stages in this process
    write their files in the test's output dir."""
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "PIPELINE_OUTPUT_DIR"):
        monkeypatch.setenv(name, pipeline.env[name])
    kafka = Kafka({"bootstrap.servers": pipeline.bootstrap})
    stages.create_topics(kafka)
    return kafka


def orders(round_: int, count: int) -> list[tuple[bytes, bytes]]:
    """Valid orders, each of its own id, one a second of the hour."""
    records = []
    for i in range(count):
        order_id, at = f"r{round_}-{i}", HOUR + timedelta(seconds=round_ * count + i)
        value = order_value(order_id, f"prod-{i % 5 + 1}", "1.25", at.isoformat())
        records.append((order_id.encode(), value))
    return records


def test_a_read_started_as_its_upstream_commits_reads_everything_committed(kafka):
    admin = kafka.admin()
    upstream = Transactions(lambda: producers.transactional_producer(kafka, "race-upstream"))
    committed, short = 0, []
    for attempt in range(LOOPS):
        # A downstream stage starting: its consumer connected while the upstream commits.
        consumer = kafka.consumer(f"race-reader-{attempt}")
        consumer.list_topics(timeout=30)
        records = [(f"{attempt}-{i}".encode(), b"x") for i in range(60)]
        ends = upstream.ends
        upstream.run(lambda producer, batch=records: produce_all(producer, settings.PROCESSED, batch, ends))
        committed += len(records)
        read = BoundedRead(consumer, settings.PROCESSED, admin=admin, from_beginning=True)
        if (got := sum(len(batch) for batch in read)) != committed:
            short.append(f"read {got} of {committed} after commit {attempt + 1}")
        consumer.close()
    assert short == []
    # Every record's delivery, by partition, is where a reader must read up to.
    reader = KafkaConsumer(bootstrap_servers=kafka.config["bootstrap.servers"])  # read_uncommitted
    ends = reader.end_offsets([TopicPartition(settings.PROCESSED, p) for p in range(settings.partitions())])
    reader.close()
    # The high watermark is past the last commit marker; the written end is before it.
    assert {int(p): end + 1 for p, end in upstream.written_upto()[settings.PROCESSED].items()} == {
        tp.partition: end for tp, end in ends.items() if end
    }


def test_each_stage_started_right_after_the_one_before_reads_all_it_committed(kafka, pipeline):
    for round_ in range(4):
        pipeline.produce_many(settings.ORDERS, orders(round_, ORDERS_A_ROUND))
        results = RunResults(process=stages.process(kafka))
        results.analyze = stages.analyze(kafka)
        results.sink = stages.sink(kafka)
        assert reconcile.check(results) == [], round_
        assert (results.process.valid, results.analyze.counted) == (ORDERS_A_ROUND, ORDERS_A_ROUND)
        assert results.sink.order_count == ORDERS_A_ROUND * (round_ + 1)


def test_another_writers_open_transaction_holds_a_read_for_the_bound_then_reconcile_names_it(
    kafka, pipeline, monkeypatch, caplog,
):
    monkeypatch.setenv("PIPELINE_OPEN_TRANSACTION_WAIT_SECONDS", "3")
    zombie = confluent_kafka.Producer({"bootstrap.servers": pipeline.bootstrap, "transactional.id": "zombie"})
    zombie.init_transactions(30)
    zombie.begin_transaction()
    zombie.produce(settings.PROCESSED, b"a record of a transaction left open", b"zombie", partition=0)
    assert zombie.flush(30) == 0  # on the broker, at offset 0 of partition 0, not committed
    pipeline.produce_many(settings.ORDERS, orders(0, ORDERS_A_ROUND))
    results = RunResults(process=stages.process(kafka))
    with caplog.at_level(logging.WARNING, logger="include.pipeline.kafka_io.reading"):
        results.analyze = stages.analyze(kafka)
    results.sink = stages.sink(kafka)

    # Process's records on partition 0 follow the zombie's; its commit marker follows them.
    uncommitted = KafkaConsumer(
        bootstrap_servers=pipeline.bootstrap, isolation_level="read_uncommitted",
        auto_offset_reset="earliest",
    )
    p0 = TopicPartition(settings.PROCESSED, 0)
    uncommitted.assign([p0])
    records = [r for batch in iter(lambda: uncommitted.poll(timeout_ms=2000).get(p0), None) for r in batch]
    uncommitted.close()
    assert records[0].key == b"zombie" and len(records) > 1
    written_end, high_watermark = records[-1].offset + 1, records[-1].offset + 2
    assert results.analyze.input.partitions["0"] == (0, 0)
    assert results.analyze.input.held == {"0": (0, high_watermark)}
    warnings = [r.getMessage() for r in caplog.records if r.name == "include.pipeline.kafka_io.reading"]
    assert len(warnings) == 1 and warnings[0].startswith(
        f"{settings.PROCESSED}: ending the read with partitions [0] not read to their ends: "
        "nothing new for 3s"
    ), warnings
    assert warnings[0].endswith(f"left for the next run: [0] offsets 0..{high_watermark - 1}")
    assert reconcile.check(results) == [
        f"analyze read {settings.PROCESSED}[0] up to offset 0, short of {written_end}, where process "
        "committed its last record in this run"
    ]
    assert reconcile.notes(results) == [
        f"analyze: {settings.PROCESSED}[0] offsets 0..{high_watermark - 1} left for the next run (a "
        "transaction of another writer was still open)"
    ]
    counted = results.analyze.counted

    zombie.abort_transaction(30)
    rest = RunResults(process=stages.process(kafka), analyze=stages.analyze(kafka), sink=stages.sink(kafka))
    assert reconcile.check(rest) == [] and reconcile.notes(rest) == []
    assert counted + rest.analyze.counted == ORDERS_A_ROUND == rest.sink.order_count
    assert rest.analyze.input.partitions["0"] == (0, written_end)


def test_the_records_a_stage_places_land_where_the_clients_partitioner_puts_their_keys(kafka):
    """The last record of each partition in a batch is placed by the stage, to know which one
    reports its delivery (kafka_io.writing.WrittenEnds): each key on the partition the client puts
    it on by itself."""
    keys = [f"order-{i}".encode() for i in range(300)]
    txns = Transactions(lambda: producers.transactional_producer(kafka, "tail-placer"))
    for first in range(0, len(keys), 7):  # batches short enough that most records are marked
        batch = [(key, b"x") for key in keys[first:first + 7]]
        txns.run(lambda producer, batch=batch: produce_all(producer, settings.PROCESSED, batch, txns.ends))
    plain = confluent_kafka.Producer({"bootstrap.servers": kafka.config["bootstrap.servers"]})
    for key in keys:
        plain.produce(settings.ORDERS, b"x", key)
    plain.flush(30)
    reader = KafkaConsumer(bootstrap_servers=kafka.config["bootstrap.servers"], auto_offset_reset="earliest")
    reader.subscribe([settings.PROCESSED, settings.ORDERS])
    placed: dict[str, dict[bytes, int]] = {settings.PROCESSED: {}, settings.ORDERS: {}}
    deadline = time.monotonic() + 60
    while min(map(len, placed.values())) < len(keys) and time.monotonic() < deadline:
        for records in reader.poll(timeout_ms=500).values():
            for record in records:
                placed[record.topic][record.key] = record.partition
    reader.close()
    assert len(placed[settings.ORDERS]) == len(keys)
    assert placed[settings.PROCESSED] == placed[settings.ORDERS]
