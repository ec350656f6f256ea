"""The one table of the pipeline's shape, and what is derived from it."""

from include.pipeline import topology


def test_each_stage_consumes_what_the_one_before_it_writes():
    for before, stage in zip(topology.PIPELINE, topology.PIPELINE[1:]):
        assert stage.input in before.outputs, (before.name, stage.name)
    assert topology.names(topology.PIPELINE) == ["generate", "process", "analyze", "sink"]
    assert topology.names(topology.CONSUMING) == ["process", "analyze", "sink"]


def test_groups_transactional_ids_and_the_lag_each_input_stands_for():
    assert topology.INPUTS == {
        "orders": "kafka-pipeline-process",
        "processed-orders": "kafka-pipeline-analyze",
        "product-metrics": "kafka-pipeline-sink",
    }
    ids = {name: stage.transactional_id for name, stage in topology.STAGES.items()}
    # The sink commits in the metrics store, not in Kafka: it has no producer to fence.
    assert ids == {
        "generate": "kafka-pipeline-generate", "process": "kafka-pipeline-process",
        "analyze": "kafka-pipeline-analyze", "sink": None, "replay": "kafka-pipeline-replay",
    }


def test_what_each_stage_reads_whole_besides_its_input():
    assert topology.ANALYZE.topics_read == ("processed-orders", "analyze-state")
    assert topology.REPLAY.topics_read == ("processed-orders", "orders-dlq")
    assert topology.GENERATE.topics_read == ()
