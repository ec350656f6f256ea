"""Which partitions of its input each worker of a stage owns, and the transactional id that goes
with them: static assignment, no consumer-group rebalance.

A stage runs as ``workers`` instances; instance ``index`` owns the partitions ``p`` with
``p % workers == index`` (round robin: with 6 partitions, 1, 2, 3 and 6 workers are each even).
Its transactional id is fixed by (workers, index), so a retry of the same instance fences its
zombie and aborts what that left open. An instance of another split that shares a partition
would not be fenced by the id alone: ``rivals`` names every such instance, and a stage fences
them all before it reads (``stages.transform.TransformLoop``), so two instances never both commit offsets
of one partition, whatever runs overlap.
"""

from __future__ import annotations

import msgspec


class TooManyWorkers(ValueError):
    """More workers than the input topic has partitions: some would have nothing to read."""


class Assignment(msgspec.Struct, frozen=True, order=True):
    """Instance ``index`` of a stage run as ``workers`` instances; (1, 0) owns every partition."""

    workers: int = 1
    index: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.workers:
            raise ValueError(f"worker index must be in [0, {self.workers}), got {self.index}")

    def partitions(self, count: int) -> list[int]:
        """The partitions it owns of a topic of ``count`` partitions."""
        check(self.workers, count)
        return list(range(self.index, count, self.workers))

    def transactional_id(self, group: str) -> str:
        """The stage's id (its consumer group) for one worker; with more, the instance's own."""
        return group if self.workers == 1 else f"{group}-{self.index}of{self.workers}"

    def rivals(self, count: int) -> list[Assignment]:
        """Every instance of any other split of ``count`` partitions that owns one of its partitions."""
        mine = self.partitions(count)
        return sorted({Assignment(w, p % w) for w in range(1, count + 1) for p in mine} - {self})

    def __str__(self) -> str:
        return "all partitions" if self.workers == 1 else f"worker {self.index} of {self.workers}"


def check(workers: int, count: int, topic: str = "the input topic") -> None:
    """TooManyWorkers unless ``workers`` instances each get a partition of ``count``."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers > count:
        raise TooManyWorkers(
            f"workers={workers} but {topic} has {count} partitions: a worker would have nothing to read; "
            f"run with workers <= {count}"
        )
