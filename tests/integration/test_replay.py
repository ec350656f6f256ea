"""Replay: kafka_pipeline_replay rebuilds the metrics of a past range from what Kafka retains,
with the numbers of the original runs, and never counts anything twice."""

import json


def replay(pipeline, start, end):
    conf = json.dumps({"start": start, "end": end})
    pipeline.airflow("dags", "test", "kafka_pipeline_replay", "2026-01-06T00:00:00+00:00", "--conf", conf)


def test_replay_rebuilds_a_lost_sink_with_the_original_numbers(pipeline):
    for seed, date in enumerate(("2026-01-05T10:00:00+00:00", "2026-01-05T11:00:00+00:00")):
        pipeline.airflow("dags", "test", "kafka_pipeline", date, "--conf", json.dumps({"orders": 1500, "seed": seed}))
    # Upstream sends some orders of the first hour again: analyze dead-letters them as duplicates.
    again = [(r.key, r.value) for r in pipeline.read("orders")[:200]]
    pipeline.produce("orders", again)
    for task in ("process", "analyze", "sink"):
        pipeline.task(task, "2026-01-05T12:00:00+00:00")
    original = pipeline.metrics_lines()
    assert len({(m["window_start"], m["product_id"]) for m in original}) == len(original) > 500

    (pipeline.output / "metrics.json").unlink()  # the sink's store is lost
    replay(pipeline, "2026-01-05T09:00:00+00:00", "2026-01-05T11:00:00+00:00")
    assert pipeline.metrics_lines() == original

    replay(pipeline, "2026-01-05T09:30:00+00:00", "2026-01-05T10:15:00+00:00")  # over what the sink has
    assert pipeline.metrics_lines() == original

    (pipeline.output / "metrics.json").unlink()
    replay(pipeline, "2026-01-05T10:00:00+00:00", "2026-01-05T10:30:00+00:00")
    assert pipeline.metrics_lines() == [m for m in original if 1767607200 <= m["window_start"] < 1767609000]
