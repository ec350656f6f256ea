"""The pipeline's shape, in one table: each stage, the topic it consumes, the topics it writes,
the ones it reads whole, its consumer group and its transactional id.

The DAGs' task chain, the stream's processes, the lag probes, reconcile's required stages, the
Order metrics page and the ACLs (``access``) all derive from it.
"""

from __future__ import annotations

import msgspec

from include.pipeline import settings


def group(name: str) -> str:
    """The consumer group (and transactional id) of a stage, or the name of a reader's group."""
    return f"{settings.GROUP_PREFIX}-{name}"


class Stage(msgspec.Struct, frozen=True):
    """One stage: where it reads and writes (topics), and under which ids."""

    name: str
    input: str | None = None  # consumed from the stage's group's committed offsets
    outputs: tuple[str, ...] = ()  # written in the stage's transactions
    reads: tuple[str, ...] = ()  # read from the start, nothing committed (state, dead letters)
    transactional: bool = True

    @property
    def group(self) -> str:
        """The stage's consumer group; also its transactional id, if it has one."""
        return group(self.name)

    @property
    def transactional_id(self) -> str | None:
        """Fixed per stage: a new attempt fences a zombie one and aborts what it left open."""
        return self.group if self.transactional else None

    @property
    def topics_read(self) -> tuple[str, ...]:
        """Every topic the stage reads: its input, then the ones it reads whole."""
        return (self.input, *self.reads) if self.input else self.reads


GENERATE = Stage("generate", outputs=(settings.ORDERS,))
PROCESS = Stage("process", input=settings.ORDERS, outputs=(settings.PROCESSED, settings.DLQ))
ANALYZE = Stage(
    "analyze", input=settings.PROCESSED, outputs=(settings.METRICS, settings.ANALYZE_STATE, settings.DLQ),
    reads=(settings.ANALYZE_STATE,),
)
# Its transaction is the metrics store's: the offsets it read up to commit there with the rows.
SINK = Stage("sink", input=settings.METRICS, transactional=False)
# Rebuilds windows from processed-orders, less what analyze dead-lettered (kafka_pipeline_replay).
REPLAY = Stage("replay", outputs=(settings.METRICS,), reads=(settings.PROCESSED, settings.DLQ))

PIPELINE = (GENERATE, PROCESS, ANALYZE, SINK)  # in order: each consumes what the one before wrote
# The stages that run as several workers, each on its share of its input's partitions (assignment).
SCALABLE = (PROCESS, ANALYZE)
CONSUMING = tuple(stage for stage in PIPELINE if stage.input)
STAGES = {stage.name: stage for stage in (*PIPELINE, REPLAY)}
# What is left on these topics past their group's offsets is work to do (lag).
INPUTS = {stage.input: stage.group for stage in CONSUMING}


def names(stages: tuple[Stage, ...]) -> list[str]:
    """The stages' names, in their order."""
    return [stage.name for stage in stages]
