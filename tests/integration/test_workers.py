"""The same input through kafka_pipeline with 1, 2 and 3 workers: the metrics store, metrics.json,
the dead letters (reason, order id) and reconcile's counts are identical, and what the oracle
(tests/oracle.py: the data contract alone) says of the input, to the cent."""

import json
from collections import Counter
from datetime import datetime, timezone
from decimal import Decimal

from include.pipeline.domain import generator
from tests.harness import in_process
from tests.harness.expected import assert_as_the_oracle_says, oracle_of
from tests.harness.factories import order_value
from tests.harness.pipeline import fresh_pipeline

HOUR = "2026-01-05T10:00:00+00:00"
NEXT_HOUR = "2026-01-05T11:00:00+00:00"
START, END = datetime(2026, 1, 5, 9, tzinfo=timezone.utc), datetime(2026, 1, 5, 10, tzinfo=timezone.utc)


def first_run_input() -> list[tuple[bytes | None, bytes | None]]:
    """3,000 generated orders (10 % invalid: the generator keys those by a user id), then copies of
    40 valid ones under other keys, so the copies reach other partitions of `orders`."""
    records = list(generator.orders(3000, START, END, invalid_ratio=0.1, seed=5))
    valid = [(key, value) for key, value in records if not key.startswith(b"user-")][:40]
    return records + [(b"copy-" + key, value) for key, value in valid]


def late_input() -> list[tuple[bytes, bytes]]:
    """One order per product two hours before the first run's: over the grace period on every
    partition, whatever partition its id hashes to (each has counted orders of 09:00-10:00)."""
    return [
        (f"late-{p}".encode(), order_value(f"late-{p}", f"prod-{p}", "3.10", "2026-01-05T07:00:00Z"))
        for p in range(1, 6)
    ]


def outcome(pipeline) -> dict:
    """What a user reads: the store (as metrics.json), the dead letters and the run's summary."""
    # A dead letter by reason and order id; one process rejected has no usable id: its value.
    dead = Counter(
        (r.headers["reason"].decode(), json.loads(r.value)["order_id"] if r.headers["source.topic"]
         == b"processed-orders" else r.value)
        for r in pipeline.read("orders-dlq")
    )
    manifest = pipeline.manifest()
    assert manifest["reconciled"] is True, manifest["problems"]
    summary = manifest["summary"]
    # Where the store and the export are differs from run to run here; what is in them may not.
    assert (summary.pop("store"), summary["export"].pop("path")) == (
        f"sqlite:///{pipeline.output}/metrics.db", str(pipeline.output / "metrics.json"),
    )
    return {"metrics": pipeline.metrics_lines(), "dead": dead, "summary": summary}


def test_one_two_and_three_workers_give_identical_exact_results(tmp_path, shared_broker):
    first, late = first_run_input(), late_input()
    outcomes = {}
    for workers in (1, 2, 3):
        pipeline = fresh_pipeline(tmp_path / f"w{workers}", shared_broker)
        pipeline.task("create_topics")
        pipeline.produce_many("orders", first)
        assert pipeline.dag_test(HOUR, orders=0, workers=workers).ok
        pipeline.produce_many("orders", late)
        assert pipeline.dag_test(NEXT_HOUR, orders=0, workers=workers).ok
        outcomes[workers] = outcome(pipeline)
        # The copies are the same values and the late orders late on any partition: the order
        # the instances read them in changes nothing.
        expected = oracle_of([value for _, value in first], [value for _, value in late])
        assert_as_the_oracle_says(pipeline, expected)
        # Each instance read its own partitions of orders, round robin.
        shares = in_process.instance_results("process", pipeline.manifest()["run_id"])
        owned = {index: sorted(map(int, share["input"]["partitions"])) for index, share in shares.items()}
        assert owned == {index: list(range(index, 6, workers)) for index in range(workers)}

    assert outcomes[1] == outcomes[2] == outcomes[3]
    # And exact. The generator keys a valid order by its id and an invalid record by a user id;
    # the first copy of each id counts, the copies are duplicates.
    valid, seen = [], set()
    for key, value in first:
        if not key.startswith((b"user-", b"copy-")):
            doc = json.loads(value, parse_float=Decimal)
            assert doc["order_id"].encode() == key and doc["order_id"] not in seen
            seen.add(doc["order_id"])
            valid.append(doc)
    whole = outcomes[1]
    assert len(expected.counted) == len(valid)
    reasons = Counter(reason for reason, _ in whole["dead"].elements())
    assert (reasons["duplicate"], reasons["late"]) == (40, 5)
    assert sum(reasons.values()) == len(first) + len(late) - len(valid)
