"""For every test: a throwaway Airflow home for the tests that import Airflow, the test brokers'
JVM, and the order `make test`'s pytest-xdist workers (--dist loadfile --no-loadscope-reorder)
take the files in."""

import os
import tempfile
from pathlib import Path

# Airflow reads its settings at import: each pytest process (each xdist worker, whatever home the
# shell names) gets a home and metadata DB of its own, with the project's DAGs and plugins (as
# scripts/airflow sets them), where the integration tests run their DAGs in-process
# (tests/harness/in_process.py deletes the runs in that DB).
ROOT = Path(__file__).resolve().parents[1]
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="airflow-home-")
os.environ.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)  # the home's airflow.db, here and in a CLI's home
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")

# The tests start dozens of brokers that each carry little: the JVM's first JIT tier alone halves
# the CPU a start costs (the suite is CPU-bound on 2 cores). The benchmark keeps the default.
os.environ.setdefault("KAFKA_JVM_OPTS", "-XX:TieredStopAtLevel=1")

# Continuous mode serves each stage's metrics on a port of 9464 on (settings.metrics_port): the
# stream tests of several pytest processes at once would take each other's. None serve them here
# but the test that reads them, on ports it finds free.
os.environ["PIPELINE_METRICS_PORT"] = "0"

# The files that take longest go first, so that the workers end together.
LONGEST_FIRST = [  # measured: `make test` of 2026-11-29 (one broker per worker), setup + calls + teardown
    "integration/test_operations_bounded.py",  # 632 s (make test, 2026-12-07: its 2 tests)
    "integration/test_operations.py",  # 606 s (the same run: its 3 tests; 1240 s as one file)
    "integration/test_restart_mark_failed.py",  # 518 s (the same run)
    "integration/test_scheduler.py",  # 454 s
    "integration/test_celery.py",  # 241 s
    "integration/test_faults_crash.py",  # 202 s
    "integration/test_replicated_cluster.py",  # 175 s
    "integration/test_stream.py",  # 164 s
    "integration/test_secured_cluster.py",  # 139 s
    "integration/test_stages_alone.py",  # 137 s
    "integration/test_faults_rerun.py",  # 112 s
    "integration/test_scale_out.py",  # 75 s (2026-12-07, alone)
    "integration/test_workers.py",  # 108 s
    "integration/test_metrics_page.py",  # 102 s
    "integration/test_metrics_postgres.py",  # 100 s
    "integration/test_bounded_read.py",  # 87 s (2026-12-07, alone)
    "integration/test_store_asset.py",  # 65 s (2026-12-07, alone)
    "integration/test_metrics_sqlite.py",  # 49 s
    "integration/test_replay.py",  # 47 s
    "integration/test_lag_trigger.py",  # 40 s
    "integration/test_upgrade.py",  # 32 s
    "integration/test_observability.py",  # 80 s (2026-12-07, alone)
    "integration/test_prometheus_metrics.py",  # 26 s (2026-12, alone)
    "integration/test_dag_run.py",  # 20 s
]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0].removeprefix("tests/"), len(rank)))
