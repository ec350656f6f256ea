"""Replay: kafka_pipeline_replay rebuilds the metrics of a past range from what Kafka retains,
with the numbers of the original runs, and never counts anything twice. And a new, empty
metrics store fills itself from product-metrics (compacted: the newest totals of every window)."""

import time

from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from include.pipeline import settings
from tests.harness.expected import assert_as_the_oracle_says, oracle_of


def replay(pipeline, start, end):
    pipeline.dag_test("2026-01-06T00:00:00+00:00", "kafka_pipeline_replay", start=start, end=end)


def lose_the_metrics(pipeline):
    """product-metrics deleted and made again, empty; the store and its export gone."""
    admin = KafkaAdminClient(bootstrap_servers=pipeline.bootstrap)
    admin.delete_topics([settings.METRICS])
    deadline = time.monotonic() + 60
    while settings.METRICS in admin.list_topics():
        assert time.monotonic() < deadline, "product-metrics was not deleted within 60 s"
        time.sleep(0.2)
    while True:  # the deletion finishes in the background: a create can still be refused for a moment
        try:
            admin.create_topics([NewTopic(settings.METRICS, settings.partitions(), 1,
                                          topic_configs=settings.TOPIC_CONFIGS[settings.METRICS])])
            break
        except Exception:
            assert time.monotonic() < deadline, "product-metrics could not be made again within 60 s"
            time.sleep(0.5)
    admin.close()
    lose_the_store(pipeline)


def lose_the_store(pipeline):
    for name in ("metrics.db", "metrics.db-wal", "metrics.db-shm", "metrics.json"):
        (pipeline.output / name).unlink(missing_ok=True)


def test_replay_rebuilds_lost_metrics_with_the_original_numbers(pipeline):
    runs, read = [], set()  # each run's orders values
    for seed, date in enumerate(("2026-01-05T10:00:00+00:00", "2026-01-05T11:00:00+00:00")):
        pipeline.dag_test(date, orders=1500, seed=seed)
        runs.append([r.value for r in pipeline.read("orders") if (r.partition, r.offset) not in read])
        read |= {(r.partition, r.offset) for r in pipeline.read("orders")}
    # Upstream sends some orders of the first hour again: analyze dead-letters them as duplicates.
    again = [(r.key, r.value) for r in pipeline.read("orders")[:200]]
    pipeline.produce("orders", again)
    pipeline.dag_test("2026-01-05T12:00:00+00:00", orders=0)
    original = assert_as_the_oracle_says(pipeline, oracle_of(*runs, [value for _, value in again]))
    assert len({(m["window_start"], m["product_id"]) for m in original}) == len(original) > 500

    lose_the_metrics(pipeline)
    replay(pipeline, "2026-01-05T09:00:00+00:00", "2026-01-05T11:00:00+00:00")
    assert pipeline.metrics_lines() == original

    replay(pipeline, "2026-01-05T09:30:00+00:00", "2026-01-05T10:15:00+00:00")  # over what the sink has
    assert pipeline.metrics_lines() == original

    # A new store (lost, or a new database) reads product-metrics from its start: no replay needed.
    lose_the_store(pipeline)
    pipeline.task("sink", "2026-01-05T13:00:00+00:00")
    assert pipeline.metrics_lines() == original

    lose_the_metrics(pipeline)
    replay(pipeline, "2026-01-05T10:00:00+00:00", "2026-01-05T10:30:00+00:00")
    assert pipeline.metrics_lines() == [m for m in original if 1767607200 <= m["window_start"] < 1767609000]
