"""Consumer lag, observed: how many committed records of a topic a consumer group has not
committed past yet, and when a backlog is worth a run. Plain Python; the offsets come from
``kafka_io.lag_probe.LagProbe`` (read without joining a group or committing anything).

Lag is counted per partition as end offset (the last stable offset, what read_committed readers
see) minus the group's committed offset (the partition's start when the group has none).
"""

from __future__ import annotations

import msgspec

# (topic, partition) -> offset
Offsets = dict[tuple[str, int], int]


class LagReport(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a lag trigger fires with and the sensor returns (the trigger event's payload)."""

    records: int  # unsignalled lag over every watched topic
    topics: dict[str, int]  # topic -> its part of ``records``
    reason: str  # MIN_RECORDS, MAX_WAIT, GAVE_UP (nothing arrived in time) or LOOKED (one look)

    def to_payload(self) -> dict:
        """The report in JSON types: a trigger event's payload, or the sensor's XCom."""
        return msgspec.to_builtins(self)

    @classmethod
    def from_payload(cls, payload: dict) -> LagReport:
        """The report back from its payload."""
        return msgspec.convert(payload, cls)


MIN_RECORDS, MAX_WAIT, GAVE_UP, LOOKED = "min_records", "max_wait", "gave_up", "looked"


class Memory(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a Backlog has signalled, JSON-able: a watcher keeps it where a restart does not lose it.
    As JSON: ``{"signalled": {"orders": {"0": 812, "1": 790}}}`` (JSON object keys are strings)."""

    signalled: dict[str, dict[int, int]]  # topic -> partition -> the end offset signalled up to

    def to_payload(self) -> dict:
        """The memory in JSON types, as a watcher's asset state store keeps it."""
        return msgspec.to_builtins(self, str_keys=True)

    @classmethod
    def from_payload(cls, payload: dict) -> Memory:
        """The memory back from its payload."""
        return msgspec.convert(payload, cls, str_keys=True)


def lag(ends: Offsets, committed: Offsets, starts: Offsets, since: Offsets | None = None) -> dict[str, int]:
    """Records per topic past what the group committed (and past ``since``, what was signalled)."""
    per_topic: dict[str, int] = {}
    for (topic, partition), end in ends.items():
        done = _position(topic, partition, committed, starts)
        if since and (topic, partition) in since and since[(topic, partition)] <= end:
            # An offset beyond the end means the topic was recreated: what was signalled is gone.
            done = max(done, since[(topic, partition)])
        per_topic[topic] = per_topic.get(topic, 0) + max(0, end - done)
    return per_topic


def positions(ends: Offsets, committed: Offsets, starts: Offsets) -> dict[str, tuple[int, int]]:
    """Per topic, its end offsets and the group's, each added up over the partitions: what a look
    at the lag saw, in two numbers (a topic with no partitions yet is left out)."""
    per_topic: dict[str, tuple[int, int]] = {}
    for (topic, partition), end in ends.items():
        total_end, total_position = per_topic.get(topic, (0, 0))
        per_topic[topic] = (total_end + end, total_position + _position(topic, partition, committed, starts))
    return per_topic


def _position(topic: str, partition: int, committed: Offsets, starts: Offsets) -> int:
    # Where the group is: its committed offset, or the log start if it has none.
    return committed.get((topic, partition), starts.get((topic, partition), 0))


class Backlog:
    """Decides when a backlog is worth signalling: ``min_records`` of lag, or lag above zero for
    ``max_wait_seconds``. Once signalled, those records are not signalled again (a watcher runs
    on after it fires, while the run it started is still working through them)."""

    def __init__(self, min_records: int, max_wait_seconds: float | None = None) -> None:
        if min_records < 1:
            raise ValueError(f"min_records must be at least 1, got {min_records}")
        self.min_records, self.max_wait_seconds = min_records, max_wait_seconds
        self.signalled: Offsets = {}
        self.waiting_since: float | None = None

    def observe(self, now: float, ends: Offsets, committed: Offsets, starts: Offsets) -> LagReport | None:
        """The report to fire with, or None to keep waiting."""
        per_topic = lag(ends, committed, starts, self.signalled)
        records = sum(per_topic.values())
        if records == 0:
            self.waiting_since = None
            return None
        if self.waiting_since is None:
            self.waiting_since = now
        if records >= self.min_records:
            reason = MIN_RECORDS
        elif self.max_wait_seconds is not None and now - self.waiting_since >= self.max_wait_seconds:
            reason = MAX_WAIT
        else:
            return None
        self.signalled = dict(ends)
        self.waiting_since = None
        return LagReport(records, per_topic, reason)

    def memory(self) -> Memory:
        """What it has signalled, for ``restore`` in the Backlog that takes over after a restart."""
        signalled: dict[str, dict[int, int]] = {}
        for (topic, partition), offset in sorted(self.signalled.items()):
            signalled.setdefault(topic, {})[partition] = offset
        return Memory(signalled)

    def restore(self, memory: Memory) -> None:
        """Take over what an earlier Backlog signalled (its ``memory()``): those records are not
        signalled again, unless their topic was recreated (as ``lag`` tells)."""
        self.signalled = {
            (topic, partition): offset
            for topic, offsets in memory.signalled.items() for partition, offset in offsets.items()
        }
