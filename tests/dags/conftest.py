"""The DAG tests' fixtures: every DAG of dags/ parsed once (``dagbag``), and the DAG a test module
is about (``dag``: its module's DAG_ID), parsed without import errors."""

from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="session")
def dagbag():
    return DagBag(dag_folder=str(DAGS))


@pytest.fixture(scope="module")
def dag(dagbag, request):
    dag_id = request.module.DAG_ID
    errors = {path: error for path, error in dagbag.import_errors.items() if Path(path).stem == dag_id}
    assert errors == {}
    return dagbag.dags[dag_id]
