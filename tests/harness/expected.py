"""What the pipeline should make of its input, decided by the oracle (tests/oracle.py: the data
contract in the standard library alone, no code of the pipeline), and the checks that compare a
pipeline's topics and store with it."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Iterable

from tests.oracle import PRODUCTS, Oracle, dead_letters_of, parse, partition_of

GRACE_SECONDS, DEDUP_HORIZON_SECONDS, PARTITIONS = 3600, 86400, 6  # the pipeline's defaults


def oracle_of(*runs: Iterable[bytes | None], partitions: int = PARTITIONS, grace: int = GRACE_SECONDS,
              horizon: int = DEDUP_HORIZON_SECONDS) -> Oracle:
    """The oracle after these runs of process and analyze, each over its orders values in order."""
    expected = Oracle(partitions, grace, horizon)
    for values in runs:
        expected.run(values)
    return expected


def oracle_of_topics(pipeline, partitions: int = PARTITIONS, grace: int = GRACE_SECONDS,
                     horizon: int = DEDUP_HORIZON_SECONDS) -> Oracle:
    """The oracle on the orders topic, with analyze's input in the order the pipeline has it:
    process's verdicts on every orders value, analyze's on each processed-orders partition's
    records in offset order (the order analyze read them in, which runs that overlap in time make
    the scheduler's), as one run (for orders that span less than the dedup horizon).
    assert_as_the_oracle_says then checks that processed-orders holds the oracle's valid orders."""
    expected = Oracle(partitions, grace, horizon)
    expected.process(r.value for r in pipeline.read("orders"))
    processed = pipeline.read("processed-orders")
    for partition in range(partitions):
        expected.analyze(partition, [parse(r.value) for r in processed if r.partition == partition])
    return expected


def assert_as_the_oracle_says(pipeline, expected: Oracle) -> list[dict]:
    """processed-orders holds the oracle's valid orders (each on the partition of its id, enriched),
    orders-dlq the (reason, order_id) it dead-lettered, and the store and metrics.json its metrics,
    to the cent. Returns the metrics."""
    processed = Counter((r.partition, r.key, *_enriched(r.json())) for r in pipeline.read("processed-orders"))
    valid = Counter(
        (partition_of(o.order_id, expected.partitions), o.order_id.encode(), o.order_id, o.product_id,
         o.product_name, o.amount, o.timestamp)
        for o in expected.valid
    )
    assert processed == valid, "processed-orders is not the oracle's valid orders on their partitions: " + (
        _differences(processed, valid))
    dead = dead_letters_of(pipeline.read("orders-dlq"))
    assert dead == expected.dead_letters, "orders-dlq is not the oracle's (reason, order_id): " + (
        _differences(dead, expected.dead_letters))
    metrics = pipeline.metrics_lines()
    assert metrics == expected.metrics()
    return metrics


def check_metrics(pipeline) -> list[dict]:
    """metrics.json equals, to the cent, the oracle's metrics of every order so far, and the dead
    letters its (the runs overlap in time: analyze's order on each partition is the scheduler's)."""
    return assert_as_the_oracle_says(pipeline, oracle_of_topics(pipeline))


def _differences(actual: Counter, expected: Counter, shown: int = 5) -> str:
    extra, missing = actual - expected, expected - actual
    return (f"{sum(extra.values())} more than expected, e.g. {list(extra.items())[:shown]}; "
            f"{sum(missing.values())} missing, e.g. {list(missing.items())[:shown]}")


def _enriched(doc: dict) -> tuple:
    return doc["order_id"], doc["product_id"], doc["product_name"], Decimal(doc["amount"]), doc["timestamp"]


CENT = Decimal("0.01")


def expected_metrics(processed: list[dict]) -> list[dict]:
    """The metrics contract, computed independently from the processed orders."""
    windows = defaultdict(list)
    for doc in processed:
        at = datetime.fromisoformat(doc["timestamp"]).astimezone(timezone.utc)
        start = int(at.timestamp()) // 60 * 60
        windows[(start, doc["product_id"])].append(Decimal(doc["amount"]))  # a JSON int too
    return [
        {
            "window_start": start, "window_end": start + 60, "product_id": product_id,
            "product_name": PRODUCTS[product_id], "order_count": len(amounts),
            "total_revenue": sum(amounts).quantize(CENT, ROUND_HALF_UP),
            "avg_order_value": (sum(amounts) / len(amounts)).quantize(CENT, ROUND_HALF_UP),
        }
        for (start, product_id), amounts in sorted(windows.items())
    ]


def metrics_of_partials(records: list) -> list[dict]:
    """The metrics product-metrics holds: the newest record per key (a partial of one partition),
    the partials of each window added up and rounded half-up once."""
    newest = {r.key: r.json() for r in records}
    windows = defaultdict(lambda: [0, Decimal(0)])
    for doc in newest.values():
        window = windows[(doc["window_start"], doc["product_id"])]
        window[0] += doc["order_count"]
        window[1] += Decimal(doc["total"])
    return [
        {
            "window_start": start, "window_end": start + 60, "product_id": product_id,
            "product_name": PRODUCTS[product_id], "order_count": count,
            "total_revenue": total.quantize(CENT, ROUND_HALF_UP),
            "avg_order_value": (total / count).quantize(CENT, ROUND_HALF_UP),
        }
        for (start, product_id), (count, total) in sorted(windows.items()) if count
    ]
