"""The metrics' definitions: Prometheus' naming conventions, every one registered under its name,
and the docs' table as the catalogue has it."""

from pathlib import Path

from include.pipeline.metrics import catalogue
from include.pipeline.metrics.catalogue import DEFINITIONS, Metrics

PAGE = Path(__file__).resolve().parents[3] / "docs/operations/observability.md"


def test_names_follow_prometheus_conventions():
    for d in DEFINITIONS:
        assert d.name.startswith("kafka_pipeline_"), d.name
        assert d.name.endswith("_total") == (d.kind == "counter"), d.name
        assert bool(d.buckets) == (d.kind == "histogram"), d.name
    assert len({d.name for d in DEFINITIONS}) == len(DEFINITIONS) == 14


def test_every_definition_is_registered_with_its_type_labels_and_help():
    families = {family.name: family for family in Metrics().registry.collect()}
    # prometheus_client names a counter's family without the _total its samples carry.
    assert {d.name.removesuffix("_total"): (d.kind, d.help) for d in DEFINITIONS} == {
        name: (family.type, family.documentation) for name, family in families.items()
    }


def test_each_metrics_has_a_registry_of_its_own():
    first, second = Metrics(), Metrics()
    first.records_read.labels("process", "orders").inc(3)
    assert first.registry.get_sample_value(
        "kafka_pipeline_records_read_total", {"stage": "process", "topic": "orders"}) == 3
    assert second.registry.get_sample_value(
        "kafka_pipeline_records_read_total", {"stage": "process", "topic": "orders"}) is None


def test_the_docs_list_every_metric_as_the_catalogue_has_it():
    table = catalogue.table()
    assert table in PAGE.read_text()
    assert table.splitlines()[2] == (
        "| kafka_pipeline_records_read_total | counter | stage, topic | records a stage read |"
    )
    assert len(table.splitlines()) == 2 + len(DEFINITIONS)
