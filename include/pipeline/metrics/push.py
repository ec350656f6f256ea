"""A bounded task's metrics to a Prometheus Pushgateway, the batch-job convention: a task ends
before any scrape would find it, so it pushes once, after its stage, grouped by DAG, task and map
index. Only when PIPELINE_PUSHGATEWAY_URL is set; a gateway that does not answer costs a line in
the task's log and at most TIMEOUT seconds, never the task."""

from __future__ import annotations

import http.client
import logging
from typing import Iterator

from prometheus_client.exposition import pushadd_to_gateway
from prometheus_client.registry import Collector, CollectorRegistry

from include.pipeline import settings
from include.pipeline.metrics.catalogue import METRICS, Metrics

log = logging.getLogger(__name__)

JOB = "kafka_pipeline"
TIMEOUT = 2.0  # seconds: a gateway that does not answer holds a finished task this long at most


class Sampled(Collector):
    """The families of ``registry`` that have samples. A push replaces, in its group, each family
    it names: an empty one (a reconcile that failed has no new last success) would delete what
    an earlier push left there."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator:
        """The families with samples, as the registry collects them now."""
        return (family for family in self.registry.collect() if family.samples)


def push(dag_id: str, task_id: str, map_index: int, metrics: Metrics = METRICS) -> bool:
    """Push ``metrics`` (pushadd: they replace the group's families of the same names) to the
    gateway, grouped by ``dag_id``, ``task_id`` and ``map_index`` (-1: not mapped); False when
    none is configured or the push failed, which is logged, in one line, not raised."""
    url = settings.pushgateway_url()
    if url is None:
        return False
    grouping = {"dag_id": dag_id, "task_id": task_id, "map_index": str(map_index)}
    try:
        pushadd_to_gateway(url, JOB, Sampled(metrics.registry), grouping, timeout=TIMEOUT)
    except (OSError, ValueError, http.client.HTTPException) as exc:  # unreachable, refused, malformed
        log.warning(
            "metrics not pushed to the Pushgateway at %s (PIPELINE_PUSHGATEWAY_URL): %s; "
            "the task goes on without", url, exc,
        )
        return False
    return True
