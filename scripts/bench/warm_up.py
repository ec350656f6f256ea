"""The throwaway brokers that anything is timed on (the stage series, scaling, the DAG runs,
sink_history, and make bench-latency's streams), each warmed up the same way first."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from confluent_kafka.admin import NewTopic

from include.pipeline import settings
from scripts.bench.baselines import copy, transactions
from scripts.bench.child import END, START
from scripts.bench.counts import check
from scripts.bench.measure import measure
from scripts.bench.results import MIXES
from scripts.kafka.local import throwaway_broker

# The bench's own: nothing the pipeline reads, so a DAG run after the warm-up finds none of it.
WARM_UP, WARM_UP_COPY = "bench-warm-up", "bench-warm-up-copy"


@contextmanager
def warmed_broker(data_dir: Path, env: dict, orders: int) -> Iterator[dict]:
    """A throwaway broker (``throwaway_broker``) warmed up with ``orders`` orders (``warm_up``, in
    a child process: a process started later inherits its parent's peak RSS as the floor of its
    own, so the bench's stays small); its data deleted once it is down."""
    try:
        with throwaway_broker(data_dir, env) as kafka_env:
            measure(kafka_env, "warm-up", orders, "-")
            yield kafka_env
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def warm_up(env: dict, orders: int) -> None:
    """``orders`` generated orders (the DAG's mix) through the broker's produce, fetch and
    transaction paths, on topics of the bench's own that are deleted afterwards: produced in
    transactions, then copied as the stages copy (read_committed, offsets in the transactions).

    A running cluster's JIT has compiled those paths and it has made its transaction and
    consumer-offset topics; a fresh one does both during the first step timed on it (a cold
    broker spent a third more CPU on a 400,000-order process)."""
    from include.pipeline.domain import generator
    from include.pipeline.kafka_io.client import Kafka
    from include.pipeline.kafka_io.writing import produce_all

    kafka = Kafka({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]})
    admin = kafka.admin()
    topics = (WARM_UP, WARM_UP_COPY)
    new = [NewTopic(topic, settings.partitions(), 1) for topic in topics]
    for future in admin.create_topics(new).values():
        future.result()
    txns = transactions(kafka, WARM_UP)
    for chunk in generator.chunks(orders, START, END, MIXES["default"], seed=1):
        txns.run(lambda producer: produce_all(producer, WARM_UP, chunk, txns.ends))
    copied = copy(kafka, WARM_UP, WARM_UP_COPY, WARM_UP)
    check("the warm-up", [f"copied {copied:,} records, not {orders:,}"] if copied != orders else [])
    for future in admin.delete_topics(list(topics)).values():
        future.result()
