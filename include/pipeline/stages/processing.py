"""process: orders, validated and enriched, to processed-orders; the rest to orders-dlq."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from include.pipeline.domain import (
    steps,
)
from include.pipeline.domain.assignment import Assignment
from include.pipeline.kafka_io.client import Kafka
from include.pipeline.kafka_io.reading import Follow
from include.pipeline.run.results import (
    ProcessResult,
)
from include.pipeline.stages.transform import TransformLoop
from include.pipeline.topology import PROCESS

log = logging.getLogger(__name__)



def process(kafka: Kafka, follow: Follow | None = None, workers: int = 1, worker: int = 0) -> ProcessResult:
    """orders -> processed-orders (valid, enriched, keyed by order id) or orders-dlq (anything
    else, unchanged); as ``worker`` of ``workers``, the orders of its share of the partitions."""
    with TransformLoop(kafka, PROCESS, follow, Assignment(workers, worker)) as loop:
        loop.run(lambda batch: steps.process(batch, datetime.now(timezone.utc).isoformat()))
    return ProcessResult(
        input=loop.input, read=loop.read, valid=loop.written, reasons=dict(loop.reasons),
        written=loop.written_to(), written_upto=loop.txns.written_upto(),
    )
