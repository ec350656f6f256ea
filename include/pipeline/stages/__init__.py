"""The stages: the Kafka edge around the per-batch steps (``domain.steps``, ``store.changes``).
Each reads what is new in its input topic, one transaction per batch, and returns its counts and
input offset ranges (the task's XCom; reconcile checks them and keeps the manifest). Bounded by
default (the Airflow tasks); with ``follow`` (``kafka_io.reading.Follow``) the same stage runs
continuously, committing every ``follow.interval`` seconds or full batch.

A module per stage, and what they share: ``topics`` (a run's first task), ``producers``,
``transform`` (the loop of process and analyze), ``state`` (analyze's changelog), ``progress``
and ``shutdown``. The stages' functions are this package's API."""

from include.pipeline.stages.analyzing import analyze
from include.pipeline.stages.generating import generate
from include.pipeline.stages.processing import process
from include.pipeline.stages.replaying import replay
from include.pipeline.stages.sinking import sink
from include.pipeline.stages.topics import create_topics

__all__ = ["analyze", "create_topics", "generate", "process", "replay", "sink"]
