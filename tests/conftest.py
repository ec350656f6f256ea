"""For every test: the test brokers' JVM, and the order `make test`'s pytest-xdist workers
(--dist loadfile --no-loadscope-reorder) take the files in."""

import os

# The tests start dozens of brokers that each carry little: the JVM's first JIT tier alone halves
# the CPU a start costs (the suite is CPU-bound on 2 cores). The benchmark keeps the default.
os.environ.setdefault("KAFKA_JVM_OPTS", "-XX:TieredStopAtLevel=1")

# The files that take longest go first, so that the workers end together.
LONGEST_FIRST = [  # measured: the whole suite with --durations
    "integration/test_metrics_postgres.py",
    "integration/test_faults_rerun.py",
    "integration/test_scheduler.py",
    "integration/test_faults_crash.py",
    "integration/test_stages_alone.py",
    "integration/test_secured_cluster.py",
    "integration/test_replicated_cluster.py",
    "integration/test_metrics_sqlite.py",
    "integration/test_replay.py",
    "integration/test_metrics_page.py",
    "integration/test_stream.py",
    "integration/test_dag_run.py",
    "integration/test_lag_trigger.py",
]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0].removeprefix("tests/"), len(rank)))
