"""One stage of include.pipeline.stages in a process of its own, without Airflow, for the tests
that kill it or pull its broker or database away under it:
``python -m tests.harness.stage_process <stage> [<metrics store URL>] [--worker <i>/<n>]``
(instance i of n of a mapped stage) with the test's environment (KAFKA_BOOTSTRAP_SERVERS,
PIPELINE_OUTPUT_DIR). The stage is what the Airflow task
runs; only its start-up is lighter (about 1 s of CPU instead of Airflow's 15). Airflow's retry
then runs in the test as the task itself (Pipeline.task)."""

import sys

from include.pipeline import stages
from include.pipeline.kafka_io.client import Kafka
from include.pipeline.store.metrics_store import MetricsStore


def main(stage: str, *args: str) -> None:
    kafka = Kafka.from_env()
    share = {}
    if "--worker" in args:
        index, workers = args[args.index("--worker") + 1].split("/")
        share = {"workers": int(workers), "worker": int(index)}
    store_url = next((arg for arg in args if "://" in arg), None)
    if stage == "sink":
        store = MetricsStore(store_url, "the test's URL") if store_url else MetricsStore.default()
        stages.sink(kafka, store=store)
    else:
        getattr(stages, stage)(kafka, **share)


if __name__ == "__main__":
    main(*sys.argv[1:])
