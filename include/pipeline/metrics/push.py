"""A bounded task's metrics to a Prometheus Pushgateway, the batch-job convention: a task ends
before any scrape would find it, so it pushes once, after its stage, grouped by DAG, task and map
index. Only when PIPELINE_PUSHGATEWAY_URL is set; a gateway that does not answer costs a line in
the task's log and at most TIMEOUT seconds, never the task."""

from __future__ import annotations

import http.client
import logging
from typing import Callable, Iterator

from prometheus_client.core import Metric
from prometheus_client.exposition import pushadd_to_gateway
from prometheus_client.registry import Collector, CollectorRegistry

from include.pipeline import settings
from include.pipeline.metrics.catalogue import METRICS, Metrics

log = logging.getLogger(__name__)

JOB = "kafka_pipeline"
TIMEOUT = 2.0  # seconds: a gateway that does not answer holds a finished task this long at most


class Sampled(Collector):
    """The samples of ``registry`` that ``mine`` takes (by their labels), in the families that
    have any. A push replaces, in its group, each family it names: an empty one (a reconcile that
    failed has no new last success) would delete what an earlier push left there."""

    def __init__(self, registry: CollectorRegistry, mine: Callable[[dict[str, str]], bool]) -> None:
        self.registry, self.mine = registry, mine

    def collect(self) -> Iterator[Metric]:
        """The families with samples of this task's, as the registry collects them now."""
        for family in self.registry.collect():
            kept = Metric(family.name, family.documentation, family.type, family.unit)
            kept.samples = [sample for sample in family.samples if self.mine(sample.labels)]
            if kept.samples:
                yield kept


def task_samples(dag_id: str, stage: str | None) -> Callable[[dict[str, str]], bool]:
    """Which samples are a task's: a stage task's are those labelled with its stage (the end-to-end
    latency, unlabelled, is the sink's); reconcile's (``stage`` None) those of its DAG. A process
    that runs several tasks (`airflow dags test`, one after another) holds all of theirs: each
    pushes its own, or two tasks' groups would carry the same series, and sums count it twice."""
    if stage is None:
        return lambda labels: labels.get("dag_id") == dag_id
    return lambda labels: labels.get("stage", "sink") == stage and "dag_id" not in labels


def push(
    dag_id: str, task_id: str, map_index: int, stage: str | None, metrics: Metrics = METRICS,
) -> bool:
    """Push the task's samples of ``metrics`` (``task_samples``: those of ``stage``, or of the run
    for reconcile, ``stage`` None; pushadd: they replace the group's families of the same names)
    to the gateway, grouped by ``dag_id``, ``task_id`` and ``map_index`` (-1: not mapped); False
    when none is configured or the push failed, which is logged, in one line, not raised."""
    url = settings.pushgateway_url()
    if url is None:
        return False
    grouping = {"dag_id": dag_id, "task_id": task_id, "map_index": str(map_index)}
    try:
        mine = task_samples(dag_id, stage)
        pushadd_to_gateway(url, JOB, Sampled(metrics.registry, mine), grouping, timeout=TIMEOUT)
    except (OSError, ValueError, http.client.HTTPException) as exc:  # unreachable, refused, malformed
        log.warning(
            "metrics not pushed to the Pushgateway at %s (PIPELINE_PUSHGATEWAY_URL): %s; "
            "the task goes on without", url, exc,
        )
        return False
    return True
