"""kafka_io.Transactions against a fake producer: which failures send a transaction again on a
new producer (those after which it cannot have committed) and which fail the stage; Behind,
a batch's transaction committing while the next is read."""

import binascii
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from include.pipeline.kafka_io.errors import Outage
from include.pipeline.kafka_io.writing import (
    Behind,
    Marks,
    Transactions,
    WrittenEnds,
    marks_of,
    produce_all,
    runs,
)

ROOT = Path(__file__).resolve().parents[3]


class FakeProducer:
    """Records its calls; ``fail`` maps a call's name to the errors it raises, one per call."""

    def __init__(self, fail: dict[str, list[KafkaError]]) -> None:
        self.fail, self.calls, self.sent = fail, [], []

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.fail.get(name):
            raise KafkaException(self.fail[name].pop(0))

    def begin_transaction(self):
        self._call("begin")

    def send_offsets_to_transaction(self, positions, metadata, timeout):
        self._call("send_offsets")
        if self.fail.get("block"):
            self.fail["block"].wait()  # past its timeout, as librdkafka's can

    def commit_transaction(self, timeout):
        self._call("commit")

    def abort_transaction(self, timeout):
        self._call("abort")

    def purge(self):
        self._call("purge")


class Source:
    def positions(self):
        return []


class Consumer:
    def consumer_group_metadata(self):
        return None


TRANSPORT = KafkaError(KafkaError._TRANSPORT, "broker transport failure", retriable=True)
ABORTABLE = KafkaError(KafkaError._STATE, "abortable", txn_requires_abort=True)
FENCED = KafkaError(KafkaError._FENCED, "fenced by a newer producer", fatal=True)
TIMED_OUT = KafkaError(KafkaError._TIMED_OUT, "timed out", retriable=True)


def run(producers: list[FakeProducer]) -> list[str]:
    """Transactions.run of one batch over ``producers`` (each new one the next); the records
    each producer was given to send, by producer."""
    made = iter(producers)
    txns = Transactions(lambda: next(made))
    txns.run(lambda producer: producer.sent.append("batch"), Consumer(), Source())
    return [producer.sent for producer in producers]


def test_a_batch_whose_offsets_failed_to_go_in_is_sent_again_on_a_new_producer():
    first, second = FakeProducer({"send_offsets": [TRANSPORT]}), FakeProducer({})
    assert run([first, second]) == [["batch"], ["batch"]]
    assert first.calls == ["begin", "send_offsets", "purge"]  # no abort: librdkafka refuses it then
    assert second.calls == ["begin", "send_offsets", "commit"]


def test_a_send_of_offsets_stuck_past_its_timeout_is_given_up_and_the_batch_sent_again(monkeypatch):
    monkeypatch.setattr("include.pipeline.kafka_io.client.TIMEOUT", 0.2)
    monkeypatch.setattr("include.pipeline.kafka_io.errors.OUTAGE_NOTICE_SECONDS", 0.1)
    stuck = threading.Event()
    first, second = FakeProducer({"block": stuck}), FakeProducer({})
    try:
        assert run([first, second]) == [["batch"], ["batch"]]
    finally:
        stuck.set()
    assert first.calls == ["begin", "send_offsets"]  # left in its call: no purge, no abort
    assert second.calls == ["begin", "send_offsets", "commit"]


def test_a_commit_kafka_says_to_abort_is_sent_again_on_a_new_producer():
    first, second = FakeProducer({"commit": [ABORTABLE]}), FakeProducer({})
    assert run([first, second]) == [["batch"], ["batch"]]
    assert second.calls == ["begin", "send_offsets", "commit"]


def test_a_commit_kafka_cannot_take_yet_is_tried_again_not_sent_again():
    producer = FakeProducer({"commit": [TIMED_OUT, TIMED_OUT]})
    assert run([producer]) == [["batch"]]
    assert producer.calls == ["begin", "send_offsets", "commit", "commit", "commit"]


def test_a_fenced_producer_fails_the_stage_without_fencing_the_other_attempt():
    producer = FakeProducer({"send_offsets": [FENCED]})
    with pytest.raises(KafkaException) as failed:
        run([producer])  # a second producer would be a StopIteration
    assert failed.value.args[0].code() == KafkaError._FENCED
    assert producer.calls == ["begin", "send_offsets", "abort"]


def test_a_failure_in_the_batch_itself_aborts_and_raises():
    producer = FakeProducer({})
    txns = Transactions(lambda: producer)

    def send(_):
        raise ValueError("a bug in the step")

    with pytest.raises(ValueError):
        txns.run(send, Consumer(), Source())
    assert producer.calls == ["begin", "abort"]


def test_an_outage_is_one_line_when_it_begins_and_one_when_it_ends(caplog, monkeypatch):
    clock = iter([100.0, 101.0, 130.0, 131.0, 145.0]).__next__
    monkeypatch.setattr("include.pipeline.kafka_io.errors.time.monotonic", clock)
    outage = Outage()
    outage.began("1/1 brokers are down")  # 100.0
    outage.began("connection refused")  # 101.0: already down, no line
    outage.ended()  # 130.0
    outage.ended()  # over: no line
    outage.began("connection refused")  # 131.0: an error queued while it was down, not a new outage
    outage.began("1/1 brokers are down")  # 145.0: a new outage
    assert [record.getMessage() for record in caplog.records] == [
        "Kafka does not answer (1/1 brokers are down): waiting for it, up to 60s within a transaction",
        "Kafka answers again, after 30s: going on",
        "Kafka does not answer (1/1 brokers are down): waiting for it, up to 60s within a transaction",
    ]


def test_a_call_served_from_what_the_client_had_buffered_does_not_end_an_outage(caplog, monkeypatch):
    clock = iter([100.0, 100.05, 101.0, 144.0]).__next__
    monkeypatch.setattr("include.pipeline.kafka_io.errors.time.monotonic", clock)
    outage = Outage()
    outage.began("connection refused")  # 100.0
    outage.ended()  # 100.05: a batch fetched before the broker went away
    outage.began("connection refused")  # 101.0: still the same outage, no line
    outage.ended()  # 144.0: Kafka answers again
    assert [record.getMessage() for record in caplog.records] == [
        "Kafka does not answer (connection refused): waiting for it, up to 60s within a transaction",
        "Kafka answers again, after 44s: going on",
    ]


class CommittedSource:
    def positions(self):
        return [TopicPartition("orders", 0, 120)]


class GroupAt:
    """A consumer whose group has committed ``offset`` on orders[0]."""

    def __init__(self, offset: int) -> None:
        self.offset = offset

    def consumer_group_metadata(self):
        return None

    def committed(self, partitions, timeout):
        return [TopicPartition(tp.topic, tp.partition, self.offset) for tp in partitions]


@pytest.mark.parametrize("group_at, sent_again", [(120, False), (100, True)], ids=["went-through", "did-not"])
def test_a_commit_in_doubt_is_settled_by_the_groups_offsets(monkeypatch, group_at, sent_again):
    monkeypatch.setattr("include.pipeline.kafka_io.errors.OUTAGE_SECONDS", 0.1)
    first, second = FakeProducer({"commit": [TIMED_OUT] * 5}), FakeProducer({})
    made = iter([first, second])
    txns = Transactions(lambda: next(made))
    txns.run(lambda producer: producer.sent.append("batch"), GroupAt(group_at), CommittedSource())
    assert "abort" not in first.calls and "purge" not in first.calls  # left as it is, its commit pending
    assert second.sent == (["batch"] if sent_again else [])


def crc32_partition(key: bytes, partitions: int) -> int:
    """librdkafka's consistent_random for a key, as its docs give it: CRC-32 modulo the count."""
    return binascii.crc32(key) % partitions


def test_the_last_record_of_each_partition_is_marked_and_placed_by_its_key():
    keys = [f"order-{i}".encode() for i in range(40)]
    marks = marks_of(keys, lambda key: key, 3)
    where = [crc32_partition(key, 3) for key in keys]
    last = {max(i for i in range(40) if where[i] == p): p for p in range(3)}
    assert marks.placed == last
    assert marks.last == frozenset(last)


def test_a_batch_over_fewer_partitions_than_the_topic_has_marks_its_last_record_only():
    keys = [b"same"] * 5
    assert marks_of(keys, lambda key: key, 4) == ({4: crc32_partition(b"same", 4)}, {4})
    assert marks_of([], lambda key: key, 4) == ({}, frozenset())


def test_a_record_without_a_key_after_the_earliest_last_record_is_placed_on_some_partition():
    keys = [None, b"a", b"b", b"c", b"d", b"e", b"f", None, b""]
    marks = marks_of(keys, lambda key: key, 2)
    assert {7, 8} <= set(marks.placed) and 0 not in marks.placed  # before them: all partitions have one after
    assert all(0 <= p < 2 for p in marks.placed.values()) and 8 in marks.last
    assert marks.last <= set(marks.placed)


def test_runs_cut_a_batch_at_its_marked_records_and_keep_its_order():
    records = list(range(10))
    cut = list(runs(records, Marks({7: 0, 2: 1, 9: 0}, frozenset({7, 9}))))
    assert cut == [([0, 1], 2), ([3, 4, 5, 6], 7), ([8], 9), ([], None)]
    assert list(runs(records, Marks({}, frozenset()))) == [(records, None)]


class Delivered:
    """A delivered record, as the client reports it."""

    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self.topic, self.partition, self.offset = (lambda: topic), (lambda: partition), (lambda: offset)


class PlacingProducer:
    """Of a topic of 3 partitions; delivers what is produced at once, each partition's from offset 0."""

    def __init__(self) -> None:
        self.offsets: dict[int, int] = {}
        self.reported: list[int] = []

    def list_topics(self, topic, timeout):
        metadata = SimpleNamespace(partitions={0: None, 1: None, 2: None}, error=None)
        return SimpleNamespace(topics={topic: metadata})

    def produce(self, topic, value, key, headers=None, timestamp=0, partition=-1, on_delivery=None):
        if partition == -1:  # the client's partitioner
            partition = crc32_partition(key, 3)
        offset = self.offsets[partition] = self.offsets.get(partition, -1) + 1
        if on_delivery is not None:
            self.reported.append(partition)
            on_delivery(None, Delivered(topic, partition, offset))


def test_only_the_last_record_of_each_partition_reports_and_counts_once_its_transaction_commits():
    ends, producer = WrittenEnds(), PlacingProducer()
    keys = [f"k{i}".encode() for i in range(30)]
    for committed in (True, False):
        ends.begin()
        produce_all(producer, "t", [(key, b"v") for key in keys], ends)
        if committed:
            ends.commit()
    counts = Counter(crc32_partition(key, 3) for key in keys)
    assert sorted(producer.reported) == [0, 0, 1, 1, 2, 2]  # one report a partition a transaction
    assert ends.committed == {("t", p): n for p, n in counts.items()}  # the second's not


def test_a_transaction_past_its_deadline_ends_the_process():
    code = (
        "import time\nfrom include.pipeline.kafka_io.writing import deadline\n"
        "with deadline(30, 'another'):\n    with deadline(1, 'a transaction'):\n        time.sleep(30)\n"
    )
    started = time.monotonic()
    ended = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20, cwd=ROOT)
    assert ended.returncode == 70 and time.monotonic() - started < 10
    assert "a transaction did not finish within 1s" in ended.stderr


# Behind: a batch's transaction commits while the next is read


class Recording:
    """A producer that records, per transaction, what was sent and the positions committed."""

    def __init__(self, release: threading.Event | None = None) -> None:
        self.release, self.transactions, self.sent = release, [], []

    def begin_transaction(self):
        self.sent = []

    def send_offsets_to_transaction(self, positions, metadata, timeout):
        if self.release is not None:
            self.release.wait(5)
        self.transactions.append((self.sent, [tp.offset for tp in positions]))

    def commit_transaction(self, timeout):
        pass

    def abort_transaction(self, timeout):
        pass


class Reading:
    """A source whose read position moves on as batches are read."""

    def __init__(self) -> None:
        self.offset = 0

    def positions(self):
        return [TopicPartition("t", 0, self.offset)]


@pytest.mark.parametrize("at_once", [False, True], ids=["behind", "following"])
def test_behind_commits_each_batch_in_order_with_the_positions_it_was_read_up_to(at_once):
    producer, source, done = Recording(None if at_once else threading.Event()), Reading(), []
    txns = Transactions(lambda: producer)

    def commit(behind, batch):
        source.offset += len(batch)
        behind.commit(lambda p: p.sent.extend(batch), source, lambda _: done.append(batch))

    with Behind(txns, Consumer(), at_once) as behind:
        commit(behind, ["a", "b"])
        # Behind, its transaction waits on the broker while the next batch is read; following, it
        # has committed, and been reported, before commit() returns.
        assert done == ([["a", "b"]] if at_once else [])
        source.offset += 5  # read on: not in the first transaction's positions
        if not at_once:
            producer.release.set()
        commit(behind, ["c"])
        assert done == ([["a", "b"], ["c"]] if at_once else [["a", "b"]])  # the first before "c" began
        commit(behind, ["d"])
    assert producer.transactions == [(["a", "b"], [2]), (["c"], [8]), (["d"], [9])]
    assert done == [["a", "b"], ["c"], ["d"]]


def test_behind_raises_a_failed_transaction_from_the_next_commit_and_sends_nothing_after_it():
    class Failing(Recording):
        def commit_transaction(self, timeout):
            raise KafkaException(FENCED)

    producer, done = Failing(), []
    txns = Transactions(lambda: producer)
    with pytest.raises(KafkaException, match="fenced"), Behind(txns, Consumer()) as behind:
        behind.commit(lambda p: p.sent.append("a"), Reading(), lambda _: done.append("a"))
        behind.commit(lambda p: p.sent.append("b"), Reading(), lambda _: done.append("b"))
    assert (producer.transactions, done) == ([(["a"], [0])], [])
