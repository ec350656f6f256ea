"""A cluster and store of the version before partitions, upgraded by a kafka_pipeline run: the
analyze state (one for all partitions, keys without a partition) migrated by create_topics, the
metrics records of then read as partition -1's partials, and what was counted then still
counted once: a copy of an order counted before is a duplicate on whatever partition it lands,
an order late against the old watermark is late."""

import json
from decimal import Decimal

import numpy as np
from confluent_kafka import Producer
from kafka import KafkaAdminClient

from include.pipeline import settings
from include.pipeline.domain import codec, state_codec
from include.pipeline.domain.dedup import fingerprint
from include.pipeline.domain.windows import Aggregate, Ledger
from tests.harness.factories import order_value

DATE = "2026-01-05T11:00:00+00:00"
W = 1767607500  # 2026-01-05T10:05:00Z
US = 1_000_000


def old_state() -> list[tuple[bytes, bytes | None]]:
    """analyze-state as the version before partitions left it: one window of two orders
    (old-1, old-2), their ids, the watermark at 10:30 and the ledger."""
    ids = np.array([fingerprint("old-1"), fingerprint("old-2")], dtype=state_codec.FINGERPRINT)
    times = np.array([W * US, (W + 10) * US], dtype=state_codec.EVENT_US)
    segments = [(key, value) for key, value, _ in state_codec.segment_records(ids, times)]
    return [
        state_codec.window_record((W, "prod-1"), Aggregate(2, Decimal("30.00"))), *segments,
        state_codec.watermark_record((W + 25 * 60) * US),
        state_codec.ledger_record(Ledger(2, Decimal("30.00"))),
    ]


def produce(pipeline, topic: str, records: list, headers=None) -> None:
    producer = Producer({"bootstrap.servers": pipeline.bootstrap})
    for key, value in records:
        producer.produce(topic, value, key, headers=headers)
    assert producer.flush(30) == 0


def test_the_state_and_metrics_of_the_version_before_partitions_carry_on_exactly(pipeline, caplog):
    pipeline.task("create_topics")  # the topics as they were (an empty analyze-state: nothing to do)
    produce(pipeline, settings.ANALYZE_STATE, old_state())
    old_metric = {
        "window_start": W, "window_end": W + 60, "product_id": "prod-1", "product_name": "Laptop",
        "order_count": 2, "total_revenue": Decimal("30.00"), "avg_order_value": Decimal("15.00"),
    }
    produce(pipeline, settings.METRICS, [(f"{W}:prod-1".encode(), codec.encode(old_metric))],
            headers=[("ledger", b'{"count":2,"revenue_cents":"30.00"}')])
    produce(pipeline, settings.ORDERS, [
        (b"old-1", order_value("old-1", "prod-1", "12.00", "2026-01-05T10:05:00Z")),  # counted before
        (b"new-1", order_value("new-1", "prod-1", "5.00", "2026-01-05T10:05:30Z")),
        (b"late-1", order_value("late-1", "prod-1", "1.00", "2026-01-05T09:00:00Z")),  # < 10:30 - 1 h
    ])

    with caplog.at_level("INFO"):
        assert pipeline.dag_test(DATE, orders=0, workers=2).ok
    manifest = pipeline.manifest()
    assert (manifest["reconciled"], manifest["problems"]) == (True, [])
    assert [line for line in caplog.messages if line.startswith("migrated the analyze state")] == [
        "migrated the analyze state of the version before partitions to 6 partitions: 1 segments of "
        "order ids and the watermark copied to each, 1 windows and the ledger left to the store (their "
        "metrics are its partials of partition -1)"
    ]
    assert pipeline.metrics_lines() == [{
        "window_start": W, "window_end": W + 60, "product_id": "prod-1", "product_name": "Laptop",
        "order_count": 3, "total_revenue": Decimal("35.00"), "avg_order_value": Decimal("11.67"),
    }]
    dead = {json.loads(r.value)["order_id"]: r.headers["reason"] for r in pipeline.read(settings.DLQ)}
    assert dead == {"old-1": b"duplicate", "late-1": b"late"}
    # The old keys are gone; every partition has the old watermark and ids under its own.
    newest = {r.key: r.value for r in pipeline.read(settings.ANALYZE_STATE)}
    assert {key for key, value in newest.items() if value is not None and b"/" not in key} == set()
    assert {key.split(b"/")[0] for key in newest if key.endswith(b"/watermark")} == {
        str(p).encode() for p in range(6)
    }
    # Once migrated, create_topics reads the changelog no more: the migration committed, in its
    # transaction, how far it read in a group of its own.
    admin = KafkaAdminClient(bootstrap_servers=pipeline.bootstrap)
    group = "kafka-pipeline-analyze-state-migrated"
    marked = admin.list_group_offsets(group)[group]
    admin.close()
    assert sum(meta.offset for meta in marked.values()) == len(old_state())
