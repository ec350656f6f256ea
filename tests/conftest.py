"""For every test: a throwaway Airflow home for the tests that import Airflow, the test brokers'
JVM, and the order `make test`'s pytest-xdist workers (--dist loadfile --no-loadscope-reorder)
take the files in."""

import os
import tempfile

# Airflow reads its settings at import: the DAG and plugin tests get a home of their own (the
# integration tests give each Airflow process its own).
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow-home-"))
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

# The tests start dozens of brokers that each carry little: the JVM's first JIT tier alone halves
# the CPU a start costs (the suite is CPU-bound on 2 cores). The benchmark keeps the default.
os.environ.setdefault("KAFKA_JVM_OPTS", "-XX:TieredStopAtLevel=1")

# The files that take longest go first, so that the workers end together.
LONGEST_FIRST = [  # measured: .ci/run with --durations=60, setup + calls + teardown
    "integration/test_operations.py",  # about 1,200 s (6 tests since; 661 s with 2)
    "integration/test_faults_rerun.py",  # 621 s
    "integration/test_faults_crash.py",  # 526 s (+ its SIGTERM test since)
    "integration/test_metrics_postgres.py",  # 503 s
    "integration/test_stages_alone.py",  # 470 s
    "integration/test_scheduler.py",  # 413 s
    "integration/test_replay.py",  # 315 s
    "integration/test_secured_cluster.py",  # 311 s
    "integration/test_replicated_cluster.py",  # 266 s
    "integration/test_metrics_sqlite.py",  # 159 s
    "integration/test_metrics_page.py",  # 124 s
    "integration/test_stream.py",  # 97 s
    "integration/test_dag_run.py",  # 83 s
    "integration/test_lag_trigger.py",  # 24 s
]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0].removeprefix("tests/"), len(rank)))
