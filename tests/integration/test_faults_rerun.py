"""Fault scenarios 3 to 5: a finished run cleared and run again (whole, then stage by stage);
duplicate and late orders mixed with a zoo of invalid input; a run's sink retried after another
run's stages. Each ends with the metrics of a clean run on the same input and every record
accounted for. The expected outcome is the oracle's (tests/oracle.py: the data contract alone)."""

from collections import Counter
from datetime import datetime, timezone
from decimal import Decimal

from include.pipeline.domain import generator
from include.pipeline.run import reconcile
from tests.harness.expected import assert_as_the_oracle_says, oracle_of
from tests.harness.factories import ZOO, order_value
from tests.oracle import Order, parse

DATE = "2026-01-05T10:00:00+00:00"
STAGES = ["generate", "process", "analyze", "sink", "reconcile"]


def dead_letter_reasons(pipeline) -> Counter:
    return Counter(r.headers["reason"].decode() for r in pipeline.read("orders-dlq"))


def assert_accounted(pipeline):
    """Every order is processed or dead-lettered (never both, never neither), and every
    processed order is counted or dead-lettered by analyze."""
    dead = pipeline.read("orders-dlq")
    sources = Counter(
        (r.headers["source.topic"], int(r.headers["source.partition"]), int(r.headers["source.offset"]))
        for r in dead
    )
    assert max(sources.values()) == 1
    orders = pipeline.read("orders")
    processed = pipeline.read("processed-orders")
    by_position = {(r.partition, r.offset): r for r in orders}
    rejected_orders = [by_position[(p, o)] for topic, p, o in sources if topic == b"orders"]
    assert len(processed) + len(rejected_orders) == len(orders)
    assert Counter(r.value for r in dead if r.headers["source.topic"] == b"orders") == Counter(
        r.value for r in rejected_orders
    )
    rejected_processed = {(p, o) for topic, p, o in sources if topic == b"processed-orders"}
    counted = [r for r in processed if (r.partition, r.offset) not in rejected_processed]
    assert sum(m["order_count"] for m in pipeline.metrics_lines()) == len(counted)
    return counted



def test_a_finished_run_cleared_and_run_again(pipeline):
    pipeline.dag_test(DATE, orders=3000, invalid_ratio=0.1)
    run_id = pipeline.manifest()["run_id"]
    first = [r.value for r in pipeline.read("orders")]
    expected = assert_as_the_oracle_says(pipeline, oracle_of(first))
    valid = sum(m["order_count"] for m in expected)

    for task in STAGES:  # the whole run cleared: the same run id regenerates the same orders
        pipeline.task(task, run_id)
    again = oracle_of(first, first)  # every valid order of the second run a duplicate
    assert again.metrics() == expected
    assert assert_as_the_oracle_says(pipeline, again) == expected
    manifest = pipeline.manifest()
    assert (manifest["reconciled"], manifest["summary"]["duplicate"], manifest["summary"]["counted"]) == (
        True, valid, 0
    )

    before = (pipeline.output / "metrics.json").read_bytes()
    for task in ["process", "analyze", "sink", "reconcile"]:
        pipeline.task(task, run_id)  # stage by stage, with nothing new to read
    assert (pipeline.output / "metrics.json").read_bytes() == before
    assert assert_as_the_oracle_says(pipeline, again) == expected
    orders = pipeline.read("orders")
    assert len(orders) == 6000
    assert Counter(r.value for r in orders) == Counter({v: 2 * n for v, n in Counter(first).items()})
    assert sum(reason == "duplicate" for reason, _ in again.dead_letters.elements()) == valid
    assert len(assert_accounted(pipeline)) == valid
    assert pipeline.manifest()["reconciled"] is True


def test_duplicates_and_late_orders_mixed_with_invalid_input(pipeline):
    pipeline.task("create_topics")
    hour = [value for _, value in generator.orders(
        400, datetime(2026, 1, 5, 10, tzinfo=timezone.utc), datetime(2026, 1, 5, 11, tzinfo=timezone.utc),
        0, seed=4)]
    zoo = [(key, value) for key, value, _ in ZOO]
    runs = [
        # 1: an hour of orders, 50 of them sent twice by the upstream producer, and the zoo
        [(None, v) for v in hour + hour[:50]] + zoo,
        # 2: the newest event time moves to 12:00:30, on every partition (each keeps its own)
        [(f"n{i}".encode(), order_value(f"n{i}", "prod-1", "100.00", "2026-01-05T12:00:30Z"))
         for i in range(30)],
        # 3: late (its window ended before 12:00:30 - 1 h), in grace, sent again, and the zoo again
        [(b"l1", order_value("l1", "prod-2", "5.00", "2026-01-05T10:30:00Z")),
         (b"l2", order_value("l2", "prod-2", "5.00", "2026-01-05T10:59:29.999Z")),
         (b"g1", order_value("g1", "prod-3", "7.005", "2026-01-05T11:00:00Z")),
         (b"g2", order_value("g2", "prod-3", "0.01", "2026-01-05T12:00:59+01:00"))]
        + [(None, v) for v in hour[100:110]] + zoo,
    ]
    for records in runs:  # each into a whole run that generates nothing itself, and reconciles
        pipeline.produce("orders", records)
        pipeline.dag_test(DATE, orders=0)
        assert pipeline.manifest()["reconciled"] is True

    # The orders' order on each partition changes nothing here: copies are identical, and the late
    # ones are late whatever came before them on their partition.
    expected = oracle_of(*([value for _, value in records] for records in runs))
    assert_as_the_oracle_says(pipeline, expected)
    reasons = Counter(reason for reason, _ in expected.dead_letters.elements())
    assert reasons["late"] == 2 and reasons["duplicate"] == 60
    assert dead_letter_reasons(pipeline) == reasons
    zoo_reasons = Counter(reason for _, _, reason in ZOO)
    assert reasons == Counter({**{k: 2 * n for k, n in zoo_reasons.items()}, "late": 2, "duplicate": 60})
    late = {r.key for r in pipeline.read("orders-dlq") if r.headers["reason"] == b"late"}
    assert late == {b"l1", b"l2"}
    counted = assert_accounted(pipeline)
    assert len(counted) == 400 + 30 + 2
    moved = {r.partition for r in pipeline.read("processed-orders") if r.key.startswith(b"n")}
    assert moved == set(range(6))  # so the rule per partition is the whole topic's here
    g = [
        m for m in pipeline.metrics_lines() if m["window_start"] == 1767610800 and m["product_id"] == "prod-3"
    ]
    assert [(m["order_count"], str(m["total_revenue"]), str(m["avg_order_value"])) for m in g] == [
        (2, "7.02", "3.51")
    ]


def test_a_sink_retried_after_another_runs_stages_reconciles(pipeline):
    # Run A's sink fails and waits for its retry; the pool frees and run B runs whole (its sink
    # applies A's metrics too); then A's sink retry and A's reconcile: the tasks in that order.
    # A runs as one whole run up to analyze (its sink and reconcile marked success, not run).
    a, b = DATE, "2026-01-05T11:00:00+00:00"
    pipeline.dag_test(a, orders=600, seed=21, mark_success="sink|reconcile")
    assert not any((pipeline.output / name).exists() for name in ("metrics.db", "runs"))  # neither has run
    pipeline.dag_test(b, orders=400, seed=22)
    assert pipeline.manifest()["reconciled"] is True
    pipeline.task("sink", a)
    pipeline.task("reconcile", a)

    manifest = pipeline.manifest()
    assert (manifest["reconciled"], manifest["problems"]) == (True, [])
    stages = manifest["stages"]
    assert stages["sink"]["read"] == 0  # B's sink applied A's metrics
    # The two runs' orders, as generate wrote them: unique ids, in event order, none late.
    orders = [r.value for r in pipeline.read("orders")]
    expected = assert_as_the_oracle_says(pipeline, oracle_of(orders))
    # A's orders are those of the hour before A (B's the hour after): A's analyze ledger has only them.
    hour_a = datetime.fromisoformat(a).timestamp() * 10**6
    of_a = oracle_of([v for v in orders if isinstance(o := parse(v), Order) and o.event_us < hour_a])
    of_a = of_a.metrics()
    counts = [sum(m["order_count"] for m in metrics) for metrics in (expected, of_a)]
    revenues = [sum(m["total_revenue"] for m in metrics) for metrics in (expected, of_a)]
    assert 900 < counts[0] and 500 < counts[1] < counts[0]
    sink, after = stages["sink"], stages["analyze"]["ledger_after"]
    assert (sink["order_count"], Decimal(sink["total_revenue"])) == (counts[0], revenues[0])
    # The generated amounts are in cents: the exact revenue is the windows' totals in cents.
    assert (sink["ledger"]["count"], Decimal(sink["ledger"]["revenue"])) == (counts[0], revenues[0])
    assert (after["count"], Decimal(after["revenue"])) == (counts[1], revenues[1])
    # The comparison with A's own analyze ledger (what reconcile did before the store kept one) fails.
    assert reconcile.check({**stages, "sink": {**sink, "ledger": None}}) == [
        f"sink: orders in the metrics != orders counted, all runs: {counts[0]} != {counts[1]}",
        f"sink: revenue in the metrics (exact) != revenue counted, all runs: {revenues[0]} != {revenues[1]}",
    ]
