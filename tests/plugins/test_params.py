from pathlib import Path

from kafka_stages.params import DAG_PARAMS, dag_params, run_params, table

PAGE = Path(__file__).resolve().parents[2] / "docs/reference/dag-params.md"


def test_the_docs_show_the_table_of_the_params_as_the_code_has_them():
    assert table() in PAGE.read_text()


def test_each_dag_gets_params_of_its_own_with_its_own_defaults():
    first, second = dag_params("kafka_pipeline"), dag_params("kafka_pipeline")
    assert first["orders"] is not second["orders"]  # a run's conf resolves into the objects themselves
    stream = {param.name: param for param in run_params("kafka_pipeline_stream")}
    assert (stream["rate"].default, stream["rate"].minimum, stream["rate"].exclusiveMinimum) == (30, None, 0)
    assert list(dag_params("kafka_pipeline_replay")) == list(DAG_PARAMS["kafka_pipeline_replay"])
    assert dag_params("kafka_pipeline")["rate"].resolve(0) == 0  # a bounded run: as fast as possible
