"""Test order for `make test`'s pytest-xdist workers (--dist loadfile): the files that take
longest go first, so that the workers end together instead of one finishing them alone."""

LONGEST_FIRST = [
    "integration/test_scheduler.py",
    "integration/test_metrics_page.py",
    "integration/test_stream.py",
    "integration/test_secured_cluster.py",
    "integration/test_faults_crash.py",
    "integration/test_replicated_cluster.py",
    "integration/test_metrics_postgres.py",
    "integration/test_faults_rerun.py",
]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0].removeprefix("tests/"), len(rank)))
