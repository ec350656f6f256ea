"""Topic setup, the first task of a run: the topics, the ACLs and partitions the run needs, and
the analyze state migrated."""

from __future__ import annotations

import logging

from include.pipeline import settings, topology
from include.pipeline.domain import (
    assignment,
)
from include.pipeline.kafka_io import access
from include.pipeline.kafka_io.admin import create_topics as create
from include.pipeline.kafka_io.admin import partition_count
from include.pipeline.kafka_io.client import Kafka
from include.pipeline.run.results import (
    CreateTopicsResult,
)
from include.pipeline.stages.state import migrate_state
from include.pipeline.topology import ANALYZE

log = logging.getLogger(__name__)



def create_topics(
    kafka: Kafka, stages: tuple[str, ...] | list[str] = (), workers: int = 1,
) -> CreateTopicsResult:
    """Create the topics that are missing (``settings.partitions()`` each, replicated up to 3
    times, as the cluster allows), then check that the principal holds the ACLs ``stages`` need
    and that the inputs of the consuming ones have a partition for each of ``workers``: a run
    that cannot work fails here, in its first task, not in the stage that needs it. With analyze
    among ``stages``, its state of the version before partitions is migrated (``migrate_state``)
    here, before any of its instances runs."""
    access.ready(kafka)
    created, denied = create(kafka.admin(), settings.partitions())
    if denied:
        grants = [access.Grant("topic", name, "Create") for name in denied]
        raise access.AccessDenied(access.principal(kafka), grants)
    log.info("topics created: %s", created or "none, all exist")
    access.check(kafka, tuple(stages))
    if ANALYZE.name in stages:
        migrate_state(kafka)
    for name in stages:
        if (topic := topology.STAGES[name].input) is not None:
            assignment.check(workers, partition_count(kafka.admin(), topic), topic)
    return CreateTopicsResult(created=created)
